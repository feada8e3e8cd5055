"""A real HorizontalPodAutoscaler (kube-controller-manager's) scaling a ModelDeployment through its
`scale` subresource, during a canary and after its promotion; and `kubectl scale`.

CPU usage comes from a fake metrics API (fakemetrics.py): the test sets the load, the pods the
HPA selects share it. The HPA is examples/autoscaling/hpa.yaml, with the behaviour made
immediate (no stabilization windows) so the test does not wait minutes. Pods are KWOK pods.
The fake metrics server listens on 127.0.0.1: this suite needs the local control plane.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from devcluster.cluster import ExistingCluster
from localworld.fakemetrics import Load, resource_metrics
from localworld.rollouts import at
from modelship.kube import storage
from modelship.kube.storage import Storage

from .mdhelpers import (
    EXAMPLES,
    Operator,
    crd_installed,
    deploy_stable,
    example,
    kube,
    md_path,
    md_status,
    operator,
    revision,
    wait_until,
)
from .test_rollouts import plugin

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

NAME = "fraud-detector"  # examples/basic.yaml, and the target of examples/autoscaling/hpa.yaml
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}
# 100m requested, 70% target: the HPA wants ceil(load / 70m) pods.
REQUEST_MILLICORES, TARGET_PERCENT = 100, 70


def manifest(image: str, replicas: int) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"].update(
        {
            "image": image,
            "replicas": replicas,
            "resources": {"requests": {"cpu": f"{REQUEST_MILLICORES}m"}},
            "strategy": {"canary": {"steps": [{"setWeight": 25}, {"pause": {}}], "scaleDownDelay": "2s"}},
        }
    )
    return doc


def hpa_manifest(namespace: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / "autoscaling" / "hpa.yaml").read_text())
    assert doc["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"] == TARGET_PERCENT
    doc["metadata"]["namespace"] = namespace
    doc["spec"]["minReplicas"] = 1
    immediate = {
        "stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 20, "periodSeconds": 1}],
    }
    doc["spec"]["behavior"] = {"scaleUp": immediate, "scaleDown": immediate}
    return doc


def load_for(replicas: int) -> int:
    """Total millicores at which the HPA settles on `replicas` pods (the middle of its band)."""
    return int((replicas - 0.5) * REQUEST_MILLICORES * TARGET_PERCENT / 100)


@pytest.fixture
def load(cluster: ExistingCluster, namespace: str, kube: Storage) -> Iterator[Load]:
    def list_pods(ns: str, selector: str) -> list[dict[str, Any]]:
        return kube.items(storage.pods_path(ns), labelSelector=selector)

    with resource_metrics(cluster, namespace, list_pods) as served:
        yield served


def deployments(kube: Storage, namespace: str) -> dict[str, int]:
    items = kube.items(storage.deployments_path(namespace), labelSelector="modelship.io/model")
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in items}


def spec_replicas(kube: Storage, namespace: str) -> int:
    md = kube.get(md_path(namespace, NAME))
    assert md is not None
    return int(md["spec"]["replicas"])


def until(what: str, probe: Any, timeout: float = 90) -> Any:
    return wait_until(what, probe, timeout=timeout, interval=0.5)


def replicas_owner(kube: Storage, namespace: str) -> list[str]:
    """The field managers that own spec.replicas."""
    md = kube.get(md_path(namespace, NAME))
    assert md is not None
    return [
        entry["manager"]
        for entry in md["metadata"].get("managedFields", [])
        if "f:replicas" in (entry.get("fieldsV1", {}).get("f:spec") or {})
    ]


def test_an_hpa_scales_both_revisions_of_a_canary_and_the_promoted_stable(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster, load: Load
) -> None:
    old = deploy_stable(kube, namespace, manifest(IMAGES["a"], 4))
    load.set(namespace, load_for(4))
    cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(hpa_manifest(namespace)))
    # The HPA reads the scale subresource: the pods status.selector matches, status.replicas of them.
    until(
        "the HPA to see 4 replicas and compute its metric",
        lambda: cluster.kubectl(
            "get",
            "hpa",
            NAME,
            "-n",
            namespace,
            "-o",
            "jsonpath={.status.currentReplicas}/{.status.currentMetrics}",
        ).startswith("4/["),
    )
    assert spec_replicas(kube, namespace) == 4

    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    new = revision(manifest(IMAGES["b"], 4))
    until(
        "the canary at 25%, paused", lambda: at(md_status(kube, namespace, NAME), "rollout.canary.step") == 1
    )
    # The status is written before the Deployments in a pass: wait for the writes, not just the step.
    until("stable at 3, the canary at 1", lambda: deployments(kube, namespace) == {old: 3, new: 1})

    # Twice the load: the HPA doubles spec.replicas, both revisions follow at the canary's weight.
    load.set(namespace, load_for(8))
    until("the HPA to scale the ModelDeployment to 8", lambda: spec_replicas(kube, namespace) == 8)
    until("both revisions scaled at 25%", lambda: deployments(kube, namespace) == {old: 6, new: 2})
    status = until(
        "status.replicas to count both revisions' pods",
        lambda: (s := md_status(kube, namespace, NAME)).get("replicas") == 8 and s,
    )
    assert status["selector"] == f"modelship.io/model={NAME}"
    canary = status["rollout"]["canary"]
    assert (canary["revision"], canary["step"], canary["weight"]) == (new, 1, 25)  # not restarted
    assert status["stableRevision"] == old
    # The HPA's write through the scale subresource made it the owner of spec.replicas; the
    # operator never writes it (so no apply of its own can take it back).
    assert replicas_owner(kube, namespace) == ["kube-controller-manager"]

    assert "promoted" in plugin(cluster, "promote", NAME, "-n", namespace)
    until(
        "the promoted canary to be stable",
        lambda: md_status(kube, namespace, NAME).get("stableRevision") == new,
    )
    until("the old revision scaled down", lambda: deployments(kube, namespace) == {new: 8})
    assert spec_replicas(kube, namespace) == 8
    assert replicas_owner(kube, namespace) == ["kube-controller-manager"]

    # After the rollout the HPA keeps scaling the new stable revision, down this time.
    load.set(namespace, load_for(3))
    until("the HPA to scale the ModelDeployment to 3", lambda: spec_replicas(kube, namespace) == 3)
    until("the new stable at 3", lambda: deployments(kube, namespace) == {new: 3})
    until("status.replicas at 3", lambda: md_status(kube, namespace, NAME).get("replicas") == 3)


def test_kubectl_scale_scales_the_model_deployment(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    stable = deploy_stable(kube, namespace, manifest(IMAGES["a"], 2))
    cluster.kubectl("scale", f"modeldeployment/{NAME}", "--replicas=5", "-n", namespace)
    until("the stable revision at 5", lambda: deployments(kube, namespace) == {stable: 5})
    until("status.replicas at 5", lambda: md_status(kube, namespace, NAME).get("replicas") == 5)
    scale = scale_of(cluster, namespace, NAME)
    assert scale["kind"] == "Scale"
    assert (scale["spec"]["replicas"], scale["status"]["replicas"]) == (5, 5)
    assert scale["status"]["selector"] == f"modelship.io/model={NAME}"
    assert spec_replicas(kube, namespace) == 5


def scale_of(cluster: ExistingCluster, namespace: str, name: str) -> dict[str, Any]:
    path = f"/apis/modelship.io/v1alpha1/namespaces/{namespace}/modeldeployments/{name}/scale"
    scale: dict[str, Any] = yaml.safe_load(cluster.kubectl("get", "--raw", path))
    return scale


def test_kubectl_scale_mid_blue_green_scales_both_colours_and_reports_the_serving_one(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    doc = copy.deepcopy(example("bluegreen.yaml"))
    name = doc["metadata"]["name"]
    doc["spec"]["strategy"]["blueGreen"].update({"autoPromote": False, "scaleDownDelay": "2s"})
    del doc["spec"]["strategy"]["blueGreen"]["previewReplicas"]  # the preview follows spec.replicas
    old = deploy_stable(kube, namespace, doc)
    kube.merge(md_path(namespace, name), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    new = revision({**doc, "spec": {**doc["spec"], "image": IMAGES["b"]}})
    until("the preview paused", lambda: md_status(kube, namespace, name).get("phase") == "Paused")

    cluster.kubectl("scale", f"modeldeployment/{name}", "--replicas=5", "-n", namespace)
    until("both colours at 5", lambda: deployments(kube, namespace) == {old: 5, new: 5})
    until("status.replicas at 5", lambda: md_status(kube, namespace, name).get("replicas") == 5)
    scale = scale_of(cluster, namespace, name)
    # The serving colour only: the preview takes no traffic.
    assert scale["status"] == {
        "replicas": 5,
        "selector": f"modelship.io/model={name},modelship.io/revision={old}",
    }
    assert at(md_status(kube, namespace, name), "rollout.blueGreen.phase") == "Preview"

    assert "promoted" in plugin(cluster, "promote", name, "-n", namespace)
    until("the new colour stable", lambda: md_status(kube, namespace, name).get("stableRevision") == new)
    until("the old colour gone", lambda: deployments(kube, namespace) == {new: 5})
    selector = f"modelship.io/model={name},modelship.io/revision={new}"
    until(
        "the scale to report the new colour",
        lambda: scale_of(cluster, namespace, name)["status"]["selector"] == selector,
    )
