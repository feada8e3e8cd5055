"""A test run that is SIGKILLed with its cluster up leaves nothing once the reaper has run: its
components die with it (their parent-death signal), and `python -m devcluster reap` kills what
escaped that (a recorded process without the signal) and removes the state directory; for a run
with the real node, it also kills the shims and containers and undoes the machine-wide changes
(bridge, network namespaces, mounts, iptables chains, node address, sysctls).

Each test runs a test of killed_run_session.py in a pytest of its own and SIGKILLs that pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import hostchanges, procs, realnode
from devcluster.cluster import COMPONENTS
from devcluster.nodeconfig import BRIDGE, NODE_IP, Layout

from .mdhelpers import wait_until

pytestmark = pytest.mark.integration
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENV = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"} | {"PYTHONPATH": str(REPO / "hack")}


def running(records: list[procs.Record]) -> set[str]:
    return {r.name for r in records if procs.is_running(r.pid, r.start)}


class KilledRun:
    """killed_run_session.py::`test` in a pytest of its own (a local cluster of its own: no
    KUBECONFIG), up until kill()."""

    def __init__(self, tmp_path: Path, test: str, timeout: float) -> None:
        ready, self.log = tmp_path / "ready", tmp_path / "run.log"
        with self.log.open("wb") as out:
            self.run = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-q",
                    "-p",
                    "no:cacheprovider",
                    # No installed plugin but the ini's timeout: hypothesis's and schemathesis's
                    # imports are ~5 s of CPU the child run has no use for.
                    "--disable-plugin-autoload",
                    "-p",
                    "pytest_timeout",
                    f"{HERE / 'killed_run_session.py'}::{test}",
                ],
                cwd=REPO,
                env=ENV | {"KILLED_RUN_READY": str(ready)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                "the child run's cluster", lambda: ready.exists() or self.run.poll() is not None, timeout
            )
            assert self.run.poll() is None, self.log.read_text()
        except BaseException:
            self.kill()
            raise
        self.state = Path(ready.read_text())
        self.records = procs.records_under(self.state)

    def kill(self) -> None:
        self.run.kill()
        self.run.wait()


def reap() -> str:
    done = subprocess.run(
        [sys.executable, "-m", "devcluster", "reap"], env=ENV, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_a_sigkilled_test_run_leaves_no_process_and_no_state_once_reaped(tmp_path: Path) -> None:
    run = KilledRun(tmp_path, "test_hold_the_cluster_until_killed", timeout=180)
    assert running(run.records) == {*COMPONENTS, "stray"}
    run.kill()
    # The components die with the run; the stray process, which has no death signal, does not.
    wait_until("the components to die with the run", lambda: running(run.records) == {"stray"}, timeout=15)
    assert procs.is_stale(run.state)

    assert f"{run.state}: killed 1 process(es), removed" in reap()
    assert running(run.records) == set()
    assert not run.state.exists()


def machine_changes() -> dict[str, object]:
    """What a real node changes on the machine, as far as the reaper must undo it."""
    netns = Path("/run/netns")
    nat = subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True, check=False).stdout
    lo = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True
    ).stdout
    return {
        "bridge": Path(f"/sys/class/net/{BRIDGE}").exists(),
        "netns": sorted(p.name for p in netns.glob("cni-*")) if netns.is_dir() else [],
        "kube chains": [line for line in nat.splitlines() if line.startswith("-N KUBE-")],
        "node address": NODE_IP in lo,
        "sysctls": hostchanges.read_sysctls(),
        "record": hostchanges.RECORD.exists(),
    }


# Runs first in a session (tests/conftest.py), before the session's own cluster takes the real node.
@pytest.mark.e2e
def test_a_sigkilled_run_with_a_real_node_leaves_nothing_on_the_machine_once_reaped(tmp_path: Path) -> None:
    reap()  # what an earlier killed run left is not this run's to show
    before = machine_changes()
    assert not before["bridge"] and not before["record"], before
    run = KilledRun(tmp_path, "test_hold_a_pod_on_the_real_node_until_killed", timeout=240)
    layout = Layout(run.state / "node")
    shims = realnode.shim_pids(layout.containerd_socket)
    pids = [*shims, *procs.children_of(shims)]
    left = [procs.Record(f"shim-or-container-{p}", p, procs.start_time(p) or -1) for p in pids]
    assert len(left) >= 3, left  # a shim, the pod's sandbox and its container
    during = machine_changes()
    assert during["bridge"] and during["netns"] and during["kube chains"] and during["node address"]
    assert realnode.mounts_under(run.state)
    run.kill()
    node = {"containerd", "kubelet", "kube-proxy"}
    wait_until("the components to die with the run", lambda: not running(run.records), timeout=15)
    assert {r.name for r in run.records} >= {*COMPONENTS, *node}
    # What containerd let go of outlives the run: the reaper's part.
    assert running(left) == {r.name for r in left}

    out = reap()
    assert f"{run.state}: killed" in out and "machine: restored the recorded sysctls" in out, out
    assert running(left) == set()
    assert not run.state.exists()
    assert machine_changes() == before
