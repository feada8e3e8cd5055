"""The fault suite's targeted crash (localworld.crashpoint) on the real operator process and the
real API server: armed for a ModelDeployment's first pass, the operator SIGKILLs itself right
after that pass's k-th write, says which write it was, and the operator started again finishes
the job unarmed. The e2e fault suite relies on it to kill after each write of a pass."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from devcluster.cluster import ExistingCluster, wait_for
from localworld import crashpoint
from localworld.rollouts import ModelDeployments, OperatorProcess
from modelship.kube.storage import Storage

from .mdhelpers import crd_installed, example, kube

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration


def test_an_armed_operator_dies_right_after_the_chosen_write_and_runs_normally_once_started_again(
    cluster: ExistingCluster, namespace: str, crd_installed: None, kube: Storage, tmp_path: Path
) -> None:
    arm = tmp_path / "operator.arm"
    env = crashpoint.hook_env(dict(cluster.env), arm)
    op = OperatorProcess(env, tmp_path / "operator.log", namespaces=[namespace]).start()
    try:
        manifest = example("basic.yaml")
        crashpoint.arm(arm, namespace, manifest["metadata"]["name"], generation=1, after=2)
        mds = ModelDeployments(kube, namespace)
        mds.create(manifest)
        result = wait_for("the armed pass", lambda: crashpoint.outcome(arm), timeout=60)
        assert result["crashed"] and result["writes"] == 2 and len(result["log"]) == 2, result
        assert result["log"][0].startswith("PATCH ") and result["log"][0].endswith("/status"), result
        assert op.child is not None
        wait_for("the operator to exit", lambda: not op.child.running, timeout=10)  # type: ignore[union-attr]
        assert op.child.returncode == -signal.SIGKILL
        assert not arm.exists()  # disarmed: the next start runs normally

        op.start()
        mds.wait_phase(manifest["metadata"]["name"], "Healthy", timeout=90)
        assert crashpoint.outcome(arm) == result  # no second crash
    finally:
        op.stop()
        print(f"operator log: {op.log_path}")
