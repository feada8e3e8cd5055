"""The reaper: what a killed run left behind, removed at the next start and by `python -m devcluster reap`.

A run (a test session, the demo, `devcluster up`, a benchmark) owns one state directory,
`$TMPDIR/modelship-cluster-*`, which names its owner process (devcluster.procs). Its children die
with it (their parent-death signal), but not what they let go of: containerd's shims and the
containers under them, mounts, and the machine-wide changes of the real node. For each state
directory whose owner is gone, the reaper
- kills every process the run recorded (by pid and start time, never a recycled pid) and what
  they started, the node's shims and the containers under them;
- unmounts what is mounted below the directory, then removes it (not while a mount is left:
  removing a directory tree through a bind mount would delete what it shows).

The image tests' podman containers have no state directory: each carries the label
`CONTAINER_OWNER` (its run's pid and start time), and the reaper removes those whose run is gone.

A live run's directory (its owner still runs) is never touched. The machine-wide part (CNI
network namespaces, the bridge, KUBE-* iptables chains, the node address, the pod cgroups and the
recorded sysctls and fixed paths, devcluster.hostchanges) is undone only by a holder of the node
lock, which a live real node keeps for as long as it runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from devcluster import hostchanges, procs, realnode
from devcluster.nodeconfig import BRIDGE, Layout

STATE_PREFIX = "modelship-cluster-"
CONTAINER_OWNER = "io.modelship.owner"  # a test container's label: "<pid>.<start time>" of its run


@dataclass
class Reaped:
    """What the reaper did to one stale run."""

    state_dir: Path
    killed: list[int] = field(default_factory=list)
    mounts_left: list[str] = field(default_factory=list)

    @property
    def removed(self) -> bool:
        return not self.state_dir.exists()

    def line(self) -> str:
        what = "removed" if self.removed else f"kept: still mounted {', '.join(self.mounts_left)}"
        return f"{self.state_dir}: killed {len(self.killed)} process(es), {what}"


def state_root() -> Path:
    return Path(tempfile.gettempdir())


def new_state_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix=STATE_PREFIX, dir=state_root()))


def stale_runs(root: Path | None = None) -> list[Path]:
    """State directories whose owner is gone (a directory with no owner is left alone)."""
    base = state_root() if root is None else root
    return sorted(d for d in base.glob(f"{STATE_PREFIX}*") if d.is_dir() and procs.is_stale(d))


def reap_run(state_dir: Path) -> Reaped:
    """Kill what the run in `state_dir` left running, unmount what it left mounted, remove it.
    The caller makes sure its owner is gone."""
    records = [r for r in procs.records_under(state_dir) if procs.is_running(r.pid, r.start)]
    # What they started, taken (with start times) before any dies and its children lose their parent.
    records += [
        procs.Record("child", p, procs.start_time(p) or -1) for p in procs.children_of(r.pid for r in records)
    ]
    killed = [r.pid for r in records if procs.kill(r)]
    killed += realnode.clean_node_dir(Layout(state_dir / "node"))
    reaped = Reaped(state_dir, killed, realnode.mounts_under(state_dir))
    if not reaped.mounts_left:
        shutil.rmtree(state_dir, ignore_errors=True)
    return reaped


def machine_leftovers() -> bool:
    """A killed node's machine-wide changes may be left: its record, or its bridge."""
    return hostchanges.RECORD.exists() or Path(f"/sys/class/net/{BRIDGE}").exists()


def reap_machine() -> str:
    """Undo the machine-wide changes of a killed real node, if no live node holds the lock."""
    if not machine_leftovers():
        return "machine: nothing left by a real node"
    lock = hostchanges.try_claim_node()
    if lock is None:
        return "machine: a live real node holds the node lock; its changes are its own"
    try:
        hostchanges.mark_holder(lock, f"{hostchanges.REAPER} {os.getpid()}")
        realnode.clean_machine()
        restored = hostchanges.restore()
    finally:
        lock.close()
    return "machine: restored " + ("the recorded sysctls" if restored else "(no sysctl record)")


def owner_label() -> str:
    """`--label` for a podman container that belongs to this run (`reap_containers`)."""
    pid = os.getpid()
    return f"{CONTAINER_OWNER}={pid}.{procs.start_time(pid) or 0}"


def reap_containers() -> list[str]:
    """Remove the podman containers whose run (their `CONTAINER_OWNER`) is gone; their ids."""
    if shutil.which("podman") is None:
        return []
    from imagebuild.podman import podman

    each = '{{.ID}} {{index .Labels "' + CONTAINER_OWNER + '"}}'
    listed = podman("ps", "-a", "--filter", f"label={CONTAINER_OWNER}", "--format", each, check=False)
    gone = []
    for line in listed.stdout.splitlines():
        cid, _, owner = line.partition(" ")
        pid, _, start = owner.strip().partition(".")
        if not (pid.isdigit() and start.isdigit() and procs.is_running(int(pid), int(start))):
            gone.append(cid)
    if gone:
        podman("rm", "-f", "-t", "0", *gone, check=False)
    return gone


def reap(root: Path | None = None, machine: bool = True) -> tuple[list[Reaped], str | None]:
    """Reap every stale run under `root` (the temp dir), then the machine's leftovers."""
    reaped = [reap_run(d) for d in stale_runs(root)]
    return reaped, reap_machine() if machine else None
