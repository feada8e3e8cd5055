"""Shadow steps against the real API server (Gateway API CRDs v1.6): the RequestHeaderModifier the
operator writes on the HTTPRoute's weighted rule at the step (weight 0: set both shadow headers
for the candidate), its return to removing them at promotion and at abort, the pods' env, and the
API server's refusals, naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, example, kube, operator, refusal, wait_until
from .test_gateway_router import gateway_manifest, route_path, weights
from .test_rollouts import IMAGES, NAME, deploy_stable, plugin, set_image, status, until_status

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

STEPS = [{"shadow": {"percent": 50}}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
REMOVED = {"remove": ["x-modelship-shadow-percent", "x-modelship-shadow-revision"]}


def shadow_manifest(image: str = IMAGES["a"]) -> dict[str, Any]:
    doc = gateway_manifest(image)
    doc["spec"]["strategy"]["canary"]["steps"] = STEPS
    return doc


def modifier(kube: Storage, namespace: str) -> dict[str, Any] | None:
    """The weighted rule's RequestHeaderModifier, as the API server stored it."""
    route = kube.get(route_path(namespace)) or {"spec": {"rules": []}}
    for rule in route["spec"]["rules"]:
        if any(b["name"] == f"{NAME}-stable" for b in rule.get("backendRefs") or []):
            for f in rule.get("filters") or []:
                if f["type"] == "RequestHeaderModifier":
                    return dict(f["requestHeaderModifier"])
    return None


def shadowing_at_weight_0(kube: Storage, namespace: str) -> str:
    """A new image, and the rollout at its pause after the shadow step; the candidate's revision."""
    deploy_stable(kube, namespace, shadow_manifest())
    wait_until("the weighted rule removes the shadow headers", lambda: modifier(kube, namespace) == REMOVED)
    set_image(kube, namespace, IMAGES["b"])
    until_status(kube, namespace, "at the pause after the shadow step", **{"rollout.canary.step": 1})
    canary = status(kube, namespace)["rollout"]["canary"]
    assert (canary["weight"], canary["shadowPercent"]) == (0, 50)
    revision = str(canary["revision"])
    assert modifier(kube, namespace) == {
        "set": [
            {"name": "x-modelship-shadow-percent", "value": "50"},
            {"name": "x-modelship-shadow-revision", "value": revision},
        ]
    }
    assert weights(kube, namespace) == (100, 0)  # users stay on stable
    return revision


def test_the_shadow_is_marked_at_weight_0_and_unmarked_at_promotion(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    revision = shadowing_at_weight_0(kube, namespace)
    deployment = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{revision}")
    assert deployment is not None
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SHADOW_TARGET"]["value"].endswith(f",{NAME}-canary:80")
    assert f"Shadow:     50% of stable's requests copied to {NAME}-canary" in plugin(
        cluster, "status", NAME, "-n", namespace
    )
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "at the pause after 50%", **{"rollout.canary.step": 3})
    assert modifier(kube, namespace) is not None and modifier(kube, namespace) != REMOVED
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "promoted", phase="Healthy", **{"rollout.canary": None})
    wait_until("the shadow headers removed again", lambda: modifier(kube, namespace) == REMOVED)


def test_the_shadow_is_unmarked_at_abort(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    shadowing_at_weight_0(kube, namespace)
    plugin(cluster, "abort", NAME, "-n", namespace)
    until_status(kube, namespace, "aborted", phase="Degraded")
    wait_until("the shadow headers removed again", lambda: modifier(kube, namespace) == REMOVED)
    assert weights(kube, namespace) == (100, 0)


@pytest.mark.parametrize(
    ("traffic", "step", "field", "reason"),
    [
        (
            {"router": "service"},
            {"percent": 10},
            "spec.strategy.canary.steps",
            "shadow needs spec.traffic.router gatewayAPI",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud"},
            {"percent": 101},
            "spec.strategy.canary.steps[0].shadow.percent",
            "less than or equal to 100",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud"},
            {},
            "spec.strategy.canary.steps[0].shadow.percent",
            "Required value",
        ),
    ],
    ids=["service-router", "above-100", "no-percent"],
)
def test_a_bad_shadow_step_is_refused_naming_the_field(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    traffic: dict[str, Any],
    step: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    manifest = copy.deepcopy(example("basic.yaml"))
    manifest["spec"]["traffic"] = traffic
    manifest["spec"]["strategy"] = {"canary": {"steps": [{"shadow": step}, {"setWeight": 10}]}}
    message = refusal(kube, namespace, manifest)
    assert field in message and reason in message, message


def test_a_step_with_a_shadow_and_a_weight_is_refused(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = copy.deepcopy(example("basic.yaml"))
    manifest["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": "fraud"}
    manifest["spec"]["strategy"] = {"canary": {"steps": [{"shadow": {"percent": 5}, "setWeight": 10}]}}
    message = refusal(kube, namespace, manifest)
    assert "must set exactly one of" in message and "experiment or shadow" in message, message
