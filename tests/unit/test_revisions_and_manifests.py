"""Revision naming and the rendered Deployment and Services."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelship.core import manifests, revisions

from .enginesim import OWNER, spec

pytestmark = pytest.mark.unit


def test_revision_name_is_the_model_deployment_name_and_a_short_hash() -> None:
    name = revisions.revision_name("fraud", revisions.template_of(spec()))
    assert re.fullmatch(r"fraud-[0-9a-f]{10}", name)


def test_revision_hash_is_stable_across_releases() -> None:
    # A changed hash renames every existing revision (and would look like a new rollout).
    assert revisions.revision_hash(revisions.template_of(spec())) == "7b5b378b2e"


@pytest.mark.parametrize(
    "change",
    [
        {"image": "registry.example/fraud@sha256:" + "c" * 64},
        {"model": {"name": "fraud", "version": "2", "sha256": "a" * 64}},
        {"port": 9000},
        {"env": [{"name": "MODEL_PATH", "value": "/m.onnx"}]},
        {"resources": {"limits": {"cpu": "1"}}},
        {"accelerator": {"type": "coral"}},
    ],
)
def test_anything_inside_the_pods_makes_a_new_revision(change: dict[str, Any]) -> None:
    assert revisions.template_of(spec(**change)) != revisions.template_of(spec())
    assert revisions.revision_hash(revisions.template_of(spec(**change))) != revisions.revision_hash(
        revisions.template_of(spec())
    )


@pytest.mark.parametrize(
    "change",
    [
        {"replicas": 9},
        {"strategy": {"blueGreen": {}}},
        {"traffic": {"router": "gatewayAPI", "httpRoute": "fraud"}},
        {"paused": True},
        {"progressDeadline": "1h"},
    ],
)
def test_replicas_strategy_and_traffic_do_not_make_a_new_revision(change: dict[str, Any]) -> None:
    assert revisions.template_of(spec(**change)) == revisions.template_of(spec())


def deployment(**change: Any) -> dict[str, Any]:
    s = spec(**change)
    return manifests.deployment(OWNER, "fraud-0123456789", revisions.template_of(s), s.replicas)


def test_deployment_pods_are_hardened() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]


def test_deployment_probes_hit_the_serving_image_health_endpoints() -> None:
    (container,) = deployment(port=9000)["spec"]["template"]["spec"]["containers"]
    assert container["ports"] == [{"name": "http", "containerPort": 9000, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_deployment_passes_the_model_identity_in_the_environment() -> None:
    (container,) = deployment(env=[{"name": "MODEL_PATH", "value": "/m.onnx"}])["spec"]["template"]["spec"][
        "containers"
    ]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["MODEL_NAME"] == "fraud"
    assert env["MODEL_VERSION"] == "1"
    assert env["MODEL_SHA256"] == "a" * 64
    assert env["PORT"] == "8080"
    assert env["MODEL_PATH"] == "/m.onnx"


def test_deployment_labels_select_exactly_one_revision() -> None:
    d = deployment()
    labels = {"modelship.io/model": "fraud", "modelship.io/revision": "fraud-0123456789"}
    assert d["spec"]["selector"]["matchLabels"] == labels
    assert labels.items() <= d["spec"]["template"]["metadata"]["labels"].items()
    assert labels.items() <= d["metadata"]["labels"].items()


def test_accelerator_requests_the_device_and_tolerates_its_taint() -> None:
    toleration = {"key": "modelship.io/accelerator", "operator": "Exists", "effect": "NoSchedule"}
    pod = deployment(
        accelerator={
            "type": "coral",
            "resource": {"name": "squat.ai/coral", "count": 2},
            "tolerations": [toleration],
        }
    )["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["squat.ai/coral"] == "2"
    assert pod["tolerations"] == [toleration]


def test_services_expose_port_80_on_the_named_container_port() -> None:
    svc = manifests.service(OWNER, "fraud-stable", {"modelship.io/revision": "r"})
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert svc["spec"]["selector"] == {"modelship.io/revision": "r"}
