"""The operator against the real API server: deploy, keep healthy, restore drift, survive restarts, clean up.

Each test runs `python -m modelship run --namespace <its namespace>` as a real
subprocess. Pods on the local cluster are KWOK pods: Running and Ready soon after
scheduling, with no container really running.
"""

from __future__ import annotations

import base64
import signal
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster
from localworld.rollouts import rolling_revision
from modelship.api import ModelDeploymentSpec
from modelship.core import revisions
from modelship.kube.storage import Storage, secret_path

from .mdhelpers import Operator, crd_installed, create_md, example, kube, md_path, operator, wait_until

__all__ = ["crd_installed", "kube", "operator"]  # fixtures used by this module
pytestmark = pytest.mark.integration

NAME = "fraud-detector"  # examples/basic.yaml


def expected_revision(manifest: dict[str, Any]) -> str:
    spec = ModelDeploymentSpec.model_validate(manifest["spec"])
    return revisions.revision_name(manifest["metadata"]["name"], revisions.template_of(spec))


def md(kube: Storage, namespace: str) -> dict[str, Any]:
    obj = kube.get(md_path(namespace, NAME))
    assert obj is not None
    return obj


def deployments(kube: Storage, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.request(
        "GET",
        f"/apis/apps/v1/namespaces/{namespace}/deployments",
        query={"labelSelector": "modelship.io/model"},
    )["items"]
    return items


def deployment_path(namespace: str, name: str) -> str:
    return f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}"


def running_pods(kube: Storage, namespace: str, revision: str) -> list[dict[str, Any]]:
    pods = kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/pods",
        query={"labelSelector": f"modelship.io/revision={revision}"},
    )["items"]
    return [
        p
        for p in pods
        if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]


def events(kube: Storage, namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query={"fieldSelector": f"involvedObject.name={NAME}"},
    )["items"]
    return items


def healthy(kube: Storage, namespace: str) -> dict[str, Any] | None:
    obj = md(kube, namespace)
    status = obj.get("status", {})
    return obj if status.get("phase") == "Healthy" and status.get("stableRevision") else None


def deploy_basic(kube: Storage, namespace: str) -> tuple[dict[str, Any], str]:
    manifest = example("basic.yaml")
    create_md(kube, namespace, manifest)
    obj = wait_until("phase Healthy with a stable revision", lambda: healthy(kube, namespace), timeout=90)
    return obj, expected_revision(manifest)


def test_basic_example_becomes_healthy_with_its_deployment_services_and_pods(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    obj, revision = deploy_basic(kube, namespace)
    status = obj["status"]
    assert status["stableRevision"] == revision
    assert status["availableReplicas"] == 2

    uid = obj["metadata"]["uid"]
    (deployment,) = deployments(kube, namespace)
    assert deployment["metadata"]["name"] == revision
    assert deployment["metadata"]["labels"]["modelship.io/revision"] == revision
    assert [r["uid"] for r in deployment["metadata"]["ownerReferences"]] == [uid]
    assert "modelship" in {m["manager"] for m in deployment["metadata"]["managedFields"]}
    for svc_name in (NAME, f"{NAME}-stable"):
        svc = kube.get(f"/api/v1/namespaces/{namespace}/services/{svc_name}")
        assert svc is not None, svc_name
        assert [r["uid"] for r in svc["metadata"]["ownerReferences"]] == [uid]
    # The feedback key its pods share: random, made once, owned by the ModelDeployment.
    key = kube.get(secret_path(namespace, f"{NAME}-feedback-key"))
    assert key is not None and [r["uid"] for r in key["metadata"]["ownerReferences"]] == [uid]
    assert len(base64.b64decode(key["data"]["key"])) == 64
    assert len(wait_until("2 running pods", lambda: running_pods(kube, namespace, revision) or None)) >= 1
    wait_until("2 running pods", lambda: len(running_pods(kube, namespace, revision)) == 2)

    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Available"]["status"] == "True"
    assert conditions["Progressing"]["reason"] == "RolloutComplete"
    for c in conditions.values():
        assert c["observedGeneration"] == obj["metadata"]["generation"]
        assert c["lastTransitionTime"] and c["message"]
    assert "kopf" not in status  # kopf's bookkeeping stays out of our status

    wait_until(
        "events for each transition",
        lambda: (
            {"Pending", "Progressing", "StableRevision", "Healthy"}
            <= {e["reason"] for e in events(kube, namespace)}
        ),
    )

    table = cluster.kubectl("get", "modeldeployments", "-n", namespace)
    header, row = table.splitlines()[:2]
    columns = ["NAME", "PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "PREVIEW", "AGE"]
    assert header.split() == columns
    assert (row.split()[0], row.split()[2]) == (NAME, revision)

    health = wait_until("the liveness endpoint", operator.health)
    assert "resync" in health
    object_lines = [line for line in operator.log_lines() if line.get("name") == NAME]
    assert object_lines and all(line["namespace"] == namespace for line in object_lines)


def test_deleted_or_edited_children_are_restored(kube: Storage, namespace: str, operator: Operator) -> None:
    _, revision = deploy_basic(kube, namespace)
    path = deployment_path(namespace, revision)
    old_uid = (kube.get(path) or {})["metadata"]["uid"]

    kube.delete(path)
    wait_until(
        "the deleted Deployment to be recreated",
        lambda: (kube.get(path) or {}).get("metadata", {}).get("uid") not in (None, old_uid),
    )
    wait_until("phase Healthy again", lambda: healthy(kube, namespace), timeout=90)

    kube.merge(path, {"spec": {"replicas": 5}}, "modelship-tests")
    wait_until("replicas reverted to the spec's 2", lambda: (kube.get(path) or {})["spec"]["replicas"] == 2)

    svc_path = f"/api/v1/namespaces/{namespace}/services/{NAME}-stable"
    kube.delete(svc_path)
    wait_until("the deleted Service to be recreated", lambda: kube.get(svc_path))
    assert len(deployments(kube, namespace)) == 1


def test_replicas_scale_in_place_and_a_new_image_starts_a_canary_beside_stable(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    _, revision = deploy_basic(kube, namespace)
    path = md_path(namespace, NAME)

    cluster.kubectl(
        "scale", "-n", namespace, f"modeldeployment/{NAME}", "--replicas=3"
    )  # the scale subresource
    wait_until(
        "3 running pods of the same revision", lambda: len(running_pods(kube, namespace, revision)) == 3
    )
    wait_until(
        "phase Healthy at 3 replicas", lambda: md(kube, namespace)["status"].get("availableReplicas") == 3
    )
    assert [d["metadata"]["name"] for d in deployments(kube, namespace)] == [revision]

    new_image = "registry.example/modelship/fraud-detector@sha256:" + "e" * 64
    kube.merge(path, {"spec": {"image": new_image}}, "modelship-tests")
    status = wait_until(
        "a canary revision",
        lambda: md(kube, namespace)["status"] if rolling_revision(md(kube, namespace)["status"]) else None,
    )
    assert status["stableRevision"] == revision
    assert rolling_revision(status) != revision
    wait_until(
        "a RolloutStarted event",
        lambda: any(e["reason"] == "RolloutStarted" for e in events(kube, namespace)),
    )
    names = sorted(d["metadata"]["name"] for d in deployments(kube, namespace))
    assert names == sorted([revision, rolling_revision(status)])
    stable = next(d for d in deployments(kube, namespace) if d["metadata"]["name"] == revision)
    assert (
        stable["spec"]["template"]["spec"]["containers"][0]["image"] == example("basic.yaml")["spec"]["image"]
    )


def test_killing_and_restarting_the_operator_changes_nothing(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    _, revision = deploy_basic(kube, namespace)
    wait_until("a resync pass after Healthy", lambda: operator.resync_passes() >= 2)
    children = [
        deployment_path(namespace, revision),
        f"/api/v1/namespaces/{namespace}/services/{NAME}",
        f"/api/v1/namespaces/{namespace}/services/{NAME}-stable",
    ]

    def writes_by_modelship(obj: dict[str, Any]) -> list[Any]:
        # Server-side apply moves an entry's `time` only when the apply changed something.
        return [m for m in obj["metadata"].get("managedFields", []) if m["manager"] == "modelship"]

    def snapshot() -> dict[str, Any]:
        # What the operator controls; pod readiness churn on the fake nodes is not part of it.
        current = md(kube, namespace)
        objects = [kube.get(p) or {} for p in children]
        return {
            "md": (
                current["metadata"]["uid"],
                current["metadata"]["generation"],
                writes_by_modelship(current),
            ),
            "stable": (current["status"]["stableRevision"], current["status"]["stableTemplate"]),
            "children": [(o["metadata"]["uid"], writes_by_modelship(o)) for o in objects],
            "deployment generation": objects[0]["metadata"]["generation"],
            "deployments": sorted(d["metadata"]["name"] for d in deployments(kube, namespace)),
            "events": len(events(kube, namespace)),
        }

    def steady() -> bool:
        # A pass may still be deciding a late transition (a condition catching up): from the
        # snapshot until its Events are posted, a kill would rightly leave them to the restart.
        first, passes = snapshot(), operator.resync_passes()
        wait_until("a resync pass", lambda: operator.resync_passes() > passes, timeout=30)
        return snapshot() == first and not md(kube, namespace)["status"].get("pendingEvents")

    wait_until("a resync pass that changes nothing", steady, timeout=90)
    before = snapshot()
    operator.stop(signal.SIGKILL)
    operator.start()
    wait_until(
        "two resync passes of the restarted operator", lambda: operator.resync_passes() >= 4, timeout=60
    )
    assert snapshot() == before


def test_deleting_the_model_deployment_removes_everything_it_created(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    deploy_basic(kube, namespace)
    kube.delete(md_path(namespace, NAME))

    def all_gone() -> bool:
        svcs = kube.request(
            "GET", f"/api/v1/namespaces/{namespace}/services", query={"labelSelector": "modelship.io/model"}
        )["items"]
        pods = kube.request(
            "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": "modelship.io/model"}
        )["items"]
        secrets = kube.request(
            "GET", f"/api/v1/namespaces/{namespace}/secrets", query={"labelSelector": "modelship.io/model"}
        )["items"]
        return not deployments(kube, namespace) and not svcs and not pods and not secrets

    wait_until("the garbage collector to remove everything", all_gone, timeout=90)
    assert kube.get(md_path(namespace, NAME)) is None


def test_coral_example_runs_on_the_coral_node(kube: Storage, namespace: str, operator: Operator) -> None:
    manifest = example("coral.yaml")
    create_md(kube, namespace, manifest)
    revision = expected_revision(manifest)
    (pod,) = wait_until("the Coral pod running", lambda: running_pods(kube, namespace, revision))
    node = kube.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert node is not None
    assert node["metadata"]["labels"].get("modelship.io/accelerator") == "coral"
    assert pod["spec"]["containers"][0]["resources"]["limits"]["squat.ai/coral"] == "1"
