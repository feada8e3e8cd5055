"""A real HPA scales a canary in the local world: serving pods on the real node behind Traefik,
under load, while examples/autoscaling/hpa.yaml doubles the ModelDeployment mid-canary and keeps
the promoted revision at that size. CPU comes from the fake metrics API (localworld.fakemetrics):
the test sets the load, the ready pods share it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import LocalCluster
from localworld.fakemetrics import Load, resource_metrics
from localworld.rollouts import OperatorProcess, model_deployment
from modelship import api
from modelship.core import control
from modelship.kube import storage

from .conftest import Rollout
from .helpers import eventually

pytestmark = pytest.mark.e2e

NAME = "fraud-detector"  # the HPA example's target
HPA = Path(__file__).resolve().parents[2] / "examples" / "autoscaling" / "hpa.yaml"
REQUEST_MILLICORES, TARGET_PERCENT = 100, 70


def load_for(replicas: int) -> int:
    """Total millicores at which the HPA settles on `replicas` pods (the middle of its band)."""
    return int((replicas - 0.5) * REQUEST_MILLICORES * TARGET_PERCENT / 100)


@pytest.fixture
def cpu(local_cluster: LocalCluster, namespace: str, api_client: client.ApiClient) -> Iterator[Load]:
    kube = storage.Storage(api_client)
    with resource_metrics(
        local_cluster, namespace, lambda ns, sel: kube.items(storage.pods_path(ns), labelSelector=sel)
    ) as served:
        yield served


def test_an_hpa_doubles_a_canary_under_load_and_the_promoted_revision_keeps_its_size(
    rollout: Rollout,
    operator: OperatorProcess,
    local_cluster: LocalCluster,
    namespace: str,
    cpu: Load,
    api_client: client.ApiClient,
) -> None:
    kube = storage.Storage(api_client)
    manifest: dict[str, Any] = model_deployment(
        NAME, rollout.world.image("v1"), "v1", [{"setWeight": 50}, {"pause": {}}]
    )
    manifest["spec"]["resources"] = {"requests": {"cpu": f"{REQUEST_MILLICORES}m"}}
    rollout.create(manifest)
    v1 = rollout.mds.wait_phase(NAME, "Healthy")["stableRevision"]
    cpu.set(namespace, load_for(2))
    hpa = yaml.safe_load(HPA.read_text())
    hpa["metadata"]["namespace"] = namespace
    immediate = {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}],
    }
    hpa["spec"]["behavior"] = {"scaleUp": immediate, "scaleDown": immediate}
    local_cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(hpa))
    load = rollout.load(rollout.endpoint(NAME), rate=20, duration=240)
    eventually("v1 to answer through Traefik", lambda: load.summary().codes.get(200, 0) >= 10, timeout=60)

    def deployments() -> dict[str, int]:
        items = kube.items(storage.deployments_path(namespace), labelSelector=f"modelship.io/model={NAME}")
        return {d["metadata"]["name"]: d["spec"]["replicas"] for d in items}

    rollout.set_image(NAME, "v2")
    status = eventually(
        "the canary at 50%, paused",
        lambda: (s := rollout.mds.status(NAME)).get("rollout", {}).get("canary", {}).get("step") == 1 and s,
        timeout=120,
    )
    v2 = status["rollout"]["canary"]["revision"]
    assert deployments() == {v1: 2, v2: 1}

    cpu.set(namespace, load_for(4))
    eventually(
        "the HPA to scale the ModelDeployment to 4",
        lambda: rollout.mds.get(NAME)["spec"]["replicas"] == 4,
        timeout=60,
    )
    eventually("both revisions scaled at 50%", lambda: deployments() == {v1: 4, v2: 2}, timeout=60)
    status = eventually(
        "all 6 pods up, counted by status.replicas",
        lambda: (s := rollout.mds.status(NAME)).get("replicas") == 6 and s,
        timeout=180,
    )
    assert (status["rollout"]["canary"]["step"], status["rollout"]["canary"]["weight"]) == (1, 50)

    def promote() -> bool:
        """What `kubectl modelship promote` does; False when the operator wrote the status meanwhile."""
        md = rollout.mds.get(NAME)
        assert md is not None
        spec = api.ModelDeploymentSpec.model_validate(md["spec"])
        patch = control.patch_for("promote", spec, api.read_status(md["status"], spec))
        version = md["metadata"]["resourceVersion"]
        return kube.patch_md(namespace, NAME, patch.target, patch.body, version) is not None

    eventually("the promotion to be written", promote, timeout=30)
    eventually("v2 promoted", lambda: rollout.mds.status(NAME).get("stableRevision") == v2, timeout=180)
    eventually("v1 scaled down, v2 at the HPA's 4", lambda: deployments() == {v2: 4}, timeout=60)
    assert rollout.mds.get(NAME)["spec"]["replicas"] == 4

    summary = load.stop()
    # Scaling both revisions up and promoting under load lost no request.
    assert summary.errors == 0 and set(summary.codes) == {200}, summary.lines()
