"""Machine-wide changes the real node makes, recorded so they are undone whatever way the run ends.

The kubelet sets three sysctls at start and the CNI bridge enables IP forwarding. The values
from before are written to a record before the node starts; stopping the node restores them and
deletes the record. A run that was killed leaves the record behind; the reaper (devcluster.reap,
at every cluster start and on `python -m devcluster reap`) or the next real node's start restores
it, so a crash costs at most one run's worth of changed settings.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from pathlib import Path
from typing import Any, TextIO

# Paths the kubelet and containerd's shims write whatever their configured roots; those that were
# not there before the node started are removed when it stops.
FIXED_PATHS = ("/var/lib/kubelet", "/var/log/pods", "/var/log/containers", "/run/containerd")
SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops", "net.ipv4.ip_forward")
STATE_DIR = Path("/run/modelship-node")  # cleared by a reboot, which also resets the sysctls
RECORD = STATE_DIR / "sysctls.json"
LOCK = STATE_DIR / "node.lock"


class NodeBusy(RuntimeError):
    """Another real node runs on this machine (its kubelet writes fixed host paths)."""


def sysctl_path(name: str, proc: Path = Path("/proc/sys")) -> Path:
    return proc / name.replace(".", "/")


def read_sysctls(names: tuple[str, ...] = SYSCTLS, proc: Path = Path("/proc/sys")) -> dict[str, str]:
    return {n: sysctl_path(n, proc).read_text().strip() for n in names}


def write_sysctls(values: dict[str, str], proc: Path = Path("/proc/sys")) -> None:
    for name, value in values.items():
        path = sysctl_path(name, proc)
        if path.read_text().strip() != value:
            path.write_text(value + "\n")


def record(
    record_path: Path = RECORD, proc: Path = Path("/proc/sys"), paths: tuple[str, ...] = FIXED_PATHS
) -> dict[str, Any]:
    """Restore a stale record (a killed run's), then record the sysctls as they are now and which
    fixed paths do not exist yet."""
    restore(record_path, proc)
    values = {"sysctls": read_sysctls(proc=proc), "absent": [p for p in paths if not Path(p).exists()]}
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(values, indent=2) + "\n")
    return values


def restore(record_path: Path = RECORD, proc: Path = Path("/proc/sys")) -> dict[str, Any] | None:
    """Put the recorded sysctls back, remove the fixed paths the node created, delete the record;
    None when there was no record."""
    if not record_path.exists():
        return None
    values: dict[str, Any] = json.loads(record_path.read_text())
    write_sysctls(values["sysctls"], proc)
    for path in values["absent"]:
        shutil.rmtree(path, ignore_errors=True)
    record_path.unlink()
    return values


REAPER = "reaper"  # how the reaper marks the lock while it cleans: a start waits for it


def claim_node(lock_path: Path = LOCK, wait_for_reaper: float = 60) -> TextIO:
    """An exclusive lock held while the node runs; the kernel drops it however the process ends.
    Held for a moment by the reaper (devcluster.reap) too: then this waits instead of failing."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_for_reaper
    while True:
        handle = lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            handle.close()
        if not holder.startswith(REAPER) or time.monotonic() > deadline:
            raise NodeBusy(
                f"a real node already runs on this machine (pid {holder}, lock {lock_path}); "
                "only one can: the kubelet writes fixed host paths. Stop it, or start this cluster "
                "without a real node."
            )
        time.sleep(0.2)


def try_claim_node(lock_path: Path = LOCK) -> TextIO | None:
    """The node lock if no one holds it now (for the reaper), else None."""
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = lock_path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def mark_holder(handle: TextIO, holder: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(holder)
    handle.flush()
