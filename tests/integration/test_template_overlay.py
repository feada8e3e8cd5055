"""spec.template against the real API server: the operator's merged pods are admitted as they are
rendered, and a changed overlay rolls out a new revision beside the stable one."""

from __future__ import annotations

from typing import Any

import pytest

from localworld.rollouts import rolling_revision
from modelship.api import ModelDeploymentSpec
from modelship.core import revisions
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, create_md, example, kube, md_path, operator, wait_until

__all__ = ["crd_installed", "kube", "operator"]  # fixtures used by this module
pytestmark = pytest.mark.integration

NAME = "fraud-detector-custom"  # examples/template.yaml


def manifest() -> dict[str, Any]:
    """examples/template.yaml, schedulable on the local cluster's nodes (no inference pool there)."""
    doc = example("template.yaml")
    pod_spec = doc["spec"]["template"]["spec"]
    del pod_spec["nodeSelector"], pod_spec["tolerations"]
    return doc


def revision_of(doc: dict[str, Any]) -> str:
    spec = ModelDeploymentSpec.model_validate(doc["spec"])
    return revisions.revision_name(doc["metadata"]["name"], revisions.template_of(spec))


def pods(kube: Storage, namespace: str, revision: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/pods",
        query={"labelSelector": f"modelship.io/revision={revision}"},
    )["items"]
    return [p for p in items if p["status"].get("phase") == "Running"]


def status(kube: Storage, namespace: str) -> dict[str, Any]:
    obj = kube.get(md_path(namespace, NAME))
    assert obj is not None
    result: dict[str, Any] = obj.get("status") or {}
    return result


def test_overlay_pods_run_with_the_secret_env_sidecar_and_service_account(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "fraud-detector"}})
    doc = manifest()
    create_md(kube, namespace, doc)
    revision = revision_of(doc)
    pod, *_ = wait_until("the overlay's pods running", lambda: pods(kube, namespace, revision), timeout=90)
    spec = pod["spec"]
    assert spec["serviceAccountName"] == "fraud-detector"
    assert [c["name"] for c in spec["containers"]] == ["model", "log-shipper"]
    model, sidecar = spec["containers"]
    assert model["image"] == doc["spec"]["image"]
    token = next(e for e in model["env"] if e["name"] == "API_TOKEN")
    assert token["valueFrom"]["secretKeyRef"] == {"name": "fraud-detector-api", "key": "token"}
    assert {"name": "labels", "mountPath": "/etc/model-labels", "readOnly": True} in model["volumeMounts"]
    assert model["startupProbe"]["failureThreshold"] == 120
    assert sidecar["securityContext"]["allowPrivilegeEscalation"] is False
    assert pod["metadata"]["labels"]["team"] == "payments"
    wait_until("phase Healthy", lambda: status(kube, namespace).get("phase") == "Healthy", timeout=90)


def test_a_changed_overlay_rolls_out_a_new_revision(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "fraud-detector"}})
    doc = manifest()
    create_md(kube, namespace, doc)
    stable = revision_of(doc)
    wait_until("stable Healthy", lambda: status(kube, namespace).get("stableRevision") == stable, timeout=90)
    doc["spec"]["template"]["metadata"]["labels"]["team"] = "risk"
    kube.merge(
        md_path(namespace, NAME), {"spec": {"template": {"metadata": {"labels": {"team": "risk"}}}}}, "tests"
    )
    canary = wait_until("a canary revision", lambda: rolling_revision(status(kube, namespace)), timeout=90)
    assert canary == revision_of(doc) != stable
    (pod, *_) = wait_until("a canary pod running", lambda: pods(kube, namespace, canary), timeout=90)
    assert pod["metadata"]["labels"]["team"] == "risk"
