"""How the local world starts its processes and what the reaper removes (devcluster.procs, .reap):
records by pid and start time, the parent-death signal, stale runs, and the node lock's waits.

These start small processes (sleep, python) but no cluster."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devcluster import hostchanges, procs, reap

pytestmark = pytest.mark.unit
HACK = Path(__file__).resolve().parents[2] / "hack"


def gone(pid: int, start: int, within: float = 5) -> bool:
    deadline = time.monotonic() + within
    while procs.is_running(pid, start):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A process that is no child of a run (the reaper's kind of leftover)."""
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def dead_process() -> procs.Record:
    done = subprocess.Popen(["true"])
    start = procs.start_time(done.pid)
    done.wait()
    return procs.Record("owner", done.pid, start or 1)


def test_start_time_is_read_past_a_command_name_with_spaces_and_parentheses() -> None:
    fields = " ".join(str(n) for n in range(4, 60))  # each field holds its own number
    assert procs.parse_start_time(f"123 (a) b (c)) S {fields}") == 22


def test_a_record_survives_a_round_trip_through_json() -> None:
    record = procs.Record("etcd", 42, 123456, ("etcd", "--name=x"))
    assert procs.Record.from_json(record.to_json()) == record


def test_a_child_is_recorded_by_pid_and_start_time_until_it_is_stopped(tmp_path: Path) -> None:
    child = procs.Child("sleeper", ["sleep", "60"], tmp_path / "logs" / "sleeper.log", tmp_path).start()
    assert child.pid is not None
    record = procs.Record.from_json(child.record_path.read_text())
    assert (record.name, record.pid, record.argv) == ("sleeper", child.pid, ("sleep", "60"))
    assert record.start == procs.start_time(child.pid)
    assert procs.records_under(tmp_path) == [record]
    child.stop(timeout=5)
    assert not child.running
    assert not child.record_path.exists()
    child.start()  # a restart: same arguments, a new pid
    assert child.running and child.pid != record.pid
    child.stop(timeout=5)


def test_a_child_that_ignores_sigterm_is_killed_after_the_bound(tmp_path: Path) -> None:
    stubborn = (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ignoring', flush=True); time.sleep(60)"
    )
    log = tmp_path / "stubborn.log"
    child = procs.Child("stubborn", [sys.executable, "-c", stubborn], log, tmp_path).start()
    deadline = time.monotonic() + 30
    while "ignoring" not in log.read_text():  # its handler is in place
        assert time.monotonic() < deadline, "the child never started"
        time.sleep(0.05)
    began = time.monotonic()
    child.stop(timeout=0.5)
    assert child.returncode == -signal.SIGKILL
    assert time.monotonic() - began < 5


def test_a_child_dies_with_the_process_that_started_it_even_by_sigkill(tmp_path: Path) -> None:
    # A run (this script) starts a child from its main thread and one from a worker thread that
    # has ended by the time the run is killed: the kernel's death signal follows the forking thread.
    run = textwrap.dedent(
        f"""
        import sys, threading, time
        sys.path.insert(0, {str(HACK)!r})
        from devcluster import procs
        d = __import__("pathlib").Path({str(tmp_path)!r})
        procs.Child("main", ["sleep", "60"], d / "main.log", d).start()
        worker = procs.Child("worker", ["sleep", "60"], d / "worker.log", d)
        t = threading.Thread(target=worker.start)
        t.start(); t.join()
        print("up", flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", run], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stdout.readline() == "up\n"
    records = procs.records_under(tmp_path)
    assert {r.name for r in records} == {"main", "worker"}
    time.sleep(0.3)  # the worker thread is gone; its child must live on
    assert all(procs.is_running(r.pid, r.start) for r in records)
    parent.kill()
    parent.wait()
    for r in records:
        assert gone(r.pid, r.start), r.name


def test_a_recycled_pid_is_never_killed(sleeper: subprocess.Popen[bytes]) -> None:
    start = procs.start_time(sleeper.pid)
    assert start is not None
    assert not procs.kill(procs.Record("recycled", sleeper.pid, start - 1))
    assert sleeper.poll() is None


def test_a_run_is_stale_only_once_its_owner_is_gone(tmp_path: Path) -> None:
    assert not procs.is_stale(tmp_path)  # no owner: not a run
    procs.claim(tmp_path)
    assert not procs.is_stale(tmp_path)  # this process owns it
    (tmp_path / procs.OWNER).write_text(dead_process().to_json())
    assert procs.is_stale(tmp_path)
    procs.release(tmp_path)
    assert not procs.is_stale(tmp_path)


def test_the_reaper_kills_a_stale_runs_processes_and_their_children_and_removes_its_dir(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    stale, live = tmp_path / f"{reap.STATE_PREFIX}stale", tmp_path / f"{reap.STATE_PREFIX}live"
    (stale / "localworld" / "prometheus").mkdir(parents=True)
    (stale / procs.OWNER).write_text(dead_process().to_json())
    # A recorded process two levels down (the world's parts record there), with a child of its own.
    parent = subprocess.Popen(
        ["sh", "-c", "sleep 60 & echo $!; wait"], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    grandchild_start = procs.start_time(grandchild)
    assert grandchild_start is not None
    record = procs.Record("prometheus", parent.pid, procs.start_time(parent.pid) or 0)
    (stale / "localworld" / "prometheus" / "prometheus.proc.json").write_text(record.to_json())
    # A live run's directory records the sleeper; the reaper must leave both alone.
    live.mkdir()
    procs.claim(live)
    sleeper_record = procs.Record("sleeper", sleeper.pid, procs.start_time(sleeper.pid) or 0)
    (live / "sleeper.proc.json").write_text(sleeper_record.to_json())
    (tmp_path / "modelship-cluster-kept").mkdir()  # stopped and kept for its logs: no owner

    reaped, machine = reap.reap(tmp_path, machine=False)

    assert machine is None
    assert [r.state_dir for r in reaped] == [stale]
    assert {parent.pid, grandchild} <= set(reaped[0].killed)
    assert reaped[0].removed and not stale.exists()
    parent.wait(timeout=5)
    assert gone(grandchild, grandchild_start)
    assert live.exists() and (tmp_path / "modelship-cluster-kept").exists()
    assert sleeper.poll() is None


def test_the_reaper_unmounts_what_a_stale_node_left_before_removing_its_dir(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("mounting needs root, which the local world's real node needs too")
    stale = tmp_path / f"{reap.STATE_PREFIX}mounted"
    volume = stale / "node" / "kubelet" / "pods" / "volume"
    volume.mkdir(parents=True)
    (stale / procs.OWNER).write_text(dead_process().to_json())
    # A bind mount of a directory outside: removing the tree through it would empty `outside`.
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep me")
    subprocess.run(["mount", "--bind", str(outside), str(volume)], check=True)
    try:
        (reaped,), _ = reap.reap(tmp_path, machine=False)
    finally:
        subprocess.run(["umount", "-l", str(volume)], check=False, capture_output=True)
    assert reaped.removed
    assert (outside / "precious").read_text() == "keep me"


def hold_lock(lock: Path, holder: str, seconds: float) -> subprocess.Popen[str]:
    script = (
        "import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
        "f.seek(0); f.truncate(); f.write(sys.argv[2]); f.flush(); print('held', flush=True); "
        "time.sleep(float(sys.argv[3]))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(lock), holder, str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_a_node_start_waits_for_the_reaper_but_not_for_a_live_node(tmp_path: Path) -> None:
    lock = tmp_path / "node.lock"
    reaper = hold_lock(lock, f"{hostchanges.REAPER} 123", 1.0)
    began = time.monotonic()
    handle = hostchanges.claim_node(lock, wait_for_reaper=10)
    assert time.monotonic() - began > 0.5
    handle.close()
    reaper.wait()
    live = hold_lock(lock, "4242", 30)
    try:
        with pytest.raises(hostchanges.NodeBusy, match="pid 4242"):
            hostchanges.claim_node(lock, wait_for_reaper=10)
        assert hostchanges.try_claim_node(lock) is None
    finally:
        live.kill()
        live.wait()


def test_reaped_line_says_what_was_done(tmp_path: Path) -> None:
    line = reap.Reaped(tmp_path / "gone", killed=[1, 2]).line()
    assert line == f"{tmp_path / 'gone'}: killed 2 process(es), removed"
    kept = reap.Reaped(tmp_path, mounts_left=["/x"]).line()
    assert kept.endswith("kept: still mounted /x")
