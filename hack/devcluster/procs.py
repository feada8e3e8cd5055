"""The one way the local cluster and world start a long-lived process, and find it again.

`Child(...).start()` runs a process
- in a session of its own: a Ctrl-C at the terminal reaches only the launcher, which then stops
  the components in order instead of all of them dying at once;
- with a parent-death signal (SIGKILL, `prctl(PR_SET_PDEATHSIG)`), so it dies with the run that
  started it however that run ends, a SIGKILL included. The kernel sends it when the *thread*
  that forked the child ends, not the process; so every child is forked by a thread that lives
  as long as the process: the main thread, or, for a start asked for on any other thread (a
  fault suite's worker, say), one spawner thread of this module's;
- recorded as `<record_dir>/<name>.proc.json`, by pid and start time (clock ticks since boot,
  /proc/<pid>/stat field 22), so that the reaper kills exactly that process and never a pid the
  kernel has since given to another.

The death signal is set in `preexec_fn`, which runs between fork and exec. CPython warns that
preexec_fn can deadlock a child forked while another thread holds a lock the function needs;
this one takes none (one prctl through a ctypes pointer resolved at import, getppid, kill).

What a child starts on its own and lets go of (containerd's shims and the containers under
them) gets no signal from us: the reaper finds those too.

A run's state directory names its owner (`owner.json`: the pid and start time of the process
that started the run); once that process is gone, the directory is stale and the reaper may
remove it and everything it records.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
RECORD_SUFFIX = ".proc.json"
OWNER = "owner.json"
# Where a run's records may lie below its state dir: its own, the node's, the world's parts'.
RECORD_GLOBS = (f"*{RECORD_SUFFIX}", f"*/*{RECORD_SUFFIX}", f"*/*/*{RECORD_SUFFIX}")

_libc = ctypes.CDLL(None, use_errno=True)
_prctl = _libc.prctl


@dataclass(frozen=True)
class Record:
    """A process as the reaper knows it: its pid and the start time that proves it is still it."""

    name: str
    pid: int
    start: int
    argv: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps({"name": self.name, "pid": self.pid, "start": self.start, "argv": self.argv})

    @classmethod
    def from_json(cls, text: str) -> Record:
        raw = json.loads(text)
        return cls(str(raw["name"]), int(raw["pid"]), int(raw["start"]), tuple(raw.get("argv", ())))


def parse_start_time(stat: str) -> int:
    """Field 22 of /proc/<pid>/stat. The command name (field 2) may hold spaces and parentheses,
    so the fields are counted from after its last ')'."""
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), None when there is no such process."""
    try:
        return parse_start_time(Path(f"/proc/{pid}/stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def is_running(pid: int, start: int) -> bool:
    """The process `pid` that started at `start` still exists (a zombie counts as gone)."""
    if start_time(pid) != start:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def kill(record: Record, sig: int = signal.SIGKILL) -> bool:
    """Signal the recorded process if it is still the one recorded; True when it was signalled."""
    if not is_running(record.pid, record.start):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(record.pid, sig)
        return True
    return False


def records_under(state_dir: Path) -> list[Record]:
    """Every process record of a run, its own and its parts' (a few levels down only: the node's
    state holds container filesystems, which must not be walked)."""
    found = []
    for pattern in RECORD_GLOBS:
        for path in sorted(state_dir.glob(pattern)):
            with contextlib.suppress(OSError, ValueError, KeyError):
                found.append(Record.from_json(path.read_text()))
    return found


def children_of(pids: Iterable[int]) -> list[int]:
    """Every descendant of `pids` now, found through /proc's parent links (taken before any is
    killed: an orphan's parent becomes init and the link is lost)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(pids)
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


# -- owners ------------------------------------------------------------------


def claim(state_dir: Path) -> None:
    """Record this process as the owner of the run in `state_dir`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    me = os.getpid()
    owner = Record("owner", me, start_time(me) or 0)
    (state_dir / OWNER).write_text(owner.to_json())


def release(state_dir: Path) -> None:
    """The run ended cleanly (its directory is kept for its logs): nothing is left to reap."""
    (state_dir / OWNER).unlink(missing_ok=True)


def owner_of(state_dir: Path) -> Record | None:
    try:
        return Record.from_json((state_dir / OWNER).read_text())
    except (OSError, ValueError, KeyError):
        return None


def is_stale(state_dir: Path) -> bool:
    """A run whose owner is gone. A directory with no owner record is not a run (created and not
    started yet, or stopped and kept for its logs)."""
    owner = owner_of(state_dir)
    return owner is not None and not is_running(owner.pid, owner.start)


# -- children ----------------------------------------------------------------


class _Spawner:
    """Runs the fork of every child asked for off the main thread, on one daemon thread that lives
    until the process ends, so that thread's end (the kernel's trigger for the parent-death
    signal) is the process's end."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[Callable[[], subprocess.Popen[bytes]], Future[Any]]]
        self._queue = queue.SimpleQueue()
        self._owner = 0  # the pid whose thread it is: a forked copy of this process has none

    def run(self, fork: Callable[[], subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
        if threading.current_thread() is threading.main_thread():
            return fork()
        with self._lock:
            if self._owner != os.getpid():
                threading.Thread(target=self._loop, name="procs-spawner", daemon=True).start()
                self._owner = os.getpid()
        done: Future[subprocess.Popen[bytes]] = Future()
        self._queue.put((fork, done))
        return done.result()

    def _loop(self) -> None:
        while True:
            fork, done = self._queue.get()
            try:
                done.set_result(fork())
            except BaseException as err:  # handed to the thread that asked
                done.set_exception(err)


_spawner = _Spawner()


def _die_with_parent(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def popen(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """`subprocess.Popen(argv, **kwargs)` for a process that dies with this one (the parent-death
    signal; forked on the spawner thread when asked for off the main thread). `Child` records
    what it starts for the reaper; a test's short-lived server needs only this."""
    parent = os.getpid()
    return _spawner.run(lambda: subprocess.Popen(argv, preexec_fn=_die_with_parent(parent), **kwargs))


@dataclass
class Child:
    """A long-lived process of the local cluster or world; start() again restarts it with the same
    arguments, environment and log."""

    name: str
    argv: list[str]
    log: Path
    record_dir: Path
    env: Mapping[str, str] | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)

    @property
    def record_path(self) -> Path:
        return self.record_dir / f"{self.name}{RECORD_SUFFIX}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def start(self) -> Child:
        if self.running:
            raise RuntimeError(f"{self.name} is already running (pid {self.pid})")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.record_dir.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.process = popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=None if self.env is None else dict(self.env),
                start_new_session=True,
            )
        pid = self.process.pid
        self.record_path.write_text(Record(self.name, pid, start_time(pid) or 0, tuple(self.argv)).to_json())
        return self

    def send(self, sig: int) -> None:
        if self.running:
            assert self.process is not None
            self.process.send_signal(sig)

    def wait(self, timeout: float) -> None:
        """Wait for the process to exit; SIGKILL it when it has not after `timeout` seconds."""
        if self.process is None:
            return
        try:
            self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.record_path.unlink(missing_ok=True)

    def stop(self, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """`sig` (SIGTERM; SIGKILL for a crash), then SIGKILL if it still runs after `timeout` s."""
        self.send(sig)
        self.wait(timeout)


def stop_all(children: Iterable[Child], timeout: float = 10) -> None:
    """SIGTERM every child (in the order given), then wait for all within one `timeout`."""
    todo = list(children)
    for child in todo:
        child.send(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for child in todo:
        child.wait(deadline - time.monotonic())


def terminate(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    """SIGTERM a process started some other way, and SIGKILL it if it has not exited after
    `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
