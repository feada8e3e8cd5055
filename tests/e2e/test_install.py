"""The real install path: `helm install` of the chart with the operator image built here (set by
digest) runs the operator as a pod on the real node, under the chart's ServiceAccount, RBAC and
securityContext, in a namespace enforcing Pod Security `restricted`. It then rolls a real serving
image from v1 to v2 by canary through Traefik and rolls a bad v3 back by analysis."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client

from devcluster.cluster import LocalCluster
from localworld import demomodels
from localworld.install import Installed, helm_install, operator_log
from localworld.rollouts import install_crd, rolling_revision
from localworld.world import LocalWorld

from .conftest import Rollout
from .helpers import eventually

pytestmark = pytest.mark.e2e
NAME = "risk"
STEPS = [{"setWeight": 25}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
ANALYSIS = demomodels.analysis("3s", count=2, window="20s", minRequests=5, inconclusiveLimit=20)


@pytest.fixture
def installed(
    local_cluster: LocalCluster, world: LocalWorld, api_client: client.ApiClient, namespace: str
) -> Iterator[Installed]:
    install_crd(api_client)  # helm skips the chart's CRD when it is there; keep the session's current
    system = f"modelship-system-{uuid.uuid4().hex[:6]}"
    try:
        yield helm_install(
            local_cluster, api_client, world.operator_image, world.prometheus.url, system, watch=[namespace]
        )
    finally:
        print(local_cluster.kubectl("logs", "-n", system, "-l", "app.kubernetes.io/instance", check=False))
        client.CoreV1Api(api_client).delete_namespace(system)


def test_the_chart_installed_operator_rolls_out_v2_and_rolls_a_bad_v3_back(
    local_cluster: LocalCluster,
    world: LocalWorld,
    api_client: client.ApiClient,
    namespace: str,
    installed: Installed,
) -> None:
    pod = client.CoreV1Api(api_client).read_namespaced_pod(installed.pod, installed.namespace)
    assert pod.spec.node_name == "modelship-node"
    assert pod.spec.containers[0].image == world.operator_image
    assert pod.spec.service_account_name == "modelship"
    # The chart's `helm test` hook: a pod of the operator image asks /readyz through the metrics Service.
    tested = subprocess.run(
        [str(local_cluster.bin_dir / "helm"), "test", installed.release, "-n", installed.namespace],
        env=local_cluster.env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    # The hook pod is deleted once it succeeds (hook-succeeded), so its logs cannot be read after.
    assert "Phase:          Succeeded" in tested.stdout, tested.stdout

    rollout = Rollout(world, api_client, namespace)
    try:
        rollout.apply(NAME, "v1", STEPS, analysis=ANALYSIS)
        v1 = rollout.mds.wait_phase(NAME, "Healthy", timeout=120)["stableRevision"]
        load = rollout.load(rollout.endpoint(NAME), rate=30, duration=400)
        eventually("v1 to answer through Traefik", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)

        rollout.set_image(NAME, "v2")
        v2 = eventually(
            "v2 promoted by the in-cluster operator",
            lambda: (
                (s := rollout.mds.status(NAME)).get("phase") == "Healthy"
                and s.get("stableRevision") not in (None, v1)
                and not rolling_revision(s)
                and s["stableRevision"]
            ),
            timeout=180,
        )
        assert rollout.served()[v2] > 0

        rollout.set_image(NAME, "v3-bad-errors")
        status = rollout.mds.wait_phase(NAME, "Degraded", timeout=150)
        progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
        assert progressing["reason"] == "AnalysisFailed" and "error-rate = " in progressing["message"]
        assert status["stableRevision"] == v2 and not rolling_revision(status)
    finally:
        rollout.close()
    log = operator_log(local_cluster, installed)
    assert log, "the operator pod logged nothing"
    assert "403" not in log and "Forbidden" not in log, log[-4000:]
