"""podman, configured for this kind of machine through its environment (nothing under /etc is edited)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

# runc: crun refuses hybrid cgroups ("cgroups in hybrid mode not supported"). cgroupfs and the
# file events logger: there is no systemd to ask. The ulimits: podman's defaults ask for more
# than the machine's hard limits allow ("error setting rlimit").
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{root}/events.log"
runtime = "runc"
"""

STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{runroot}"
"""


def cache_root() -> Path:
    """~/.cache/modelship (or $MODELSHIP_CACHE), the same root as the local cluster's binaries."""
    base = os.environ.get("MODELSHIP_CACHE")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "modelship"


def images_root() -> Path:
    return cache_root() / "images"


def write_config(root: Path | None = None) -> dict[str, str]:
    """Writes containers.conf and storage.conf under the cache; returns the variables that select them."""
    root = root or images_root() / "podman"
    root.mkdir(parents=True, exist_ok=True)
    # Run state belongs on a filesystem that a reboot clears, so podman notices the reboot.
    runroot = Path(os.environ.get("XDG_RUNTIME_DIR") or "/run") / f"modelship-podman-{os.getuid()}"
    conf = root / "containers.conf"
    storage = root / "storage.conf"
    for path, text in (
        (conf, CONTAINERS_CONF.format(root=root)),
        (storage, STORAGE_CONF.format(root=root, runroot=runroot)),
    ):
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
    return {"CONTAINERS_CONF": str(conf), "CONTAINERS_STORAGE_CONF": str(storage)}


def environ() -> dict[str, str]:
    """This process's environment plus the podman configuration."""
    return {**os.environ, **write_config()}


def podman(
    *args: str,
    check: bool = True,
    input_bytes: bytes | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Runs podman with our configuration; captures its output as text."""
    r = subprocess.run(
        ["podman", *args], env=environ(), input=input_bytes, capture_output=True, timeout=timeout
    )
    done = subprocess.CompletedProcess(
        r.args, r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")
    )
    if check and done.returncode != 0:
        raise PodmanError(list(args), done.returncode, done.stdout, done.stderr)
    return done


def podman_stream(args: Sequence[str], timeout: float | None = None) -> int:
    """Runs podman with its output on ours (long builds show their progress); returns the exit code."""
    return subprocess.run(["podman", *args], env=environ(), timeout=timeout).returncode


class PodmanError(RuntimeError):
    def __init__(self, args: list[str], code: int, stdout: str, stderr: str) -> None:
        super().__init__(f"podman {' '.join(args)} exited {code}:\n{stderr[-4000:]}")
        self.code = code
        self.stdout = stdout
        self.stderr = stderr


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False).returncode == 0
