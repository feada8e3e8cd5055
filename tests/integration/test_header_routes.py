"""setHeaderRoute against the real API server (Gateway API CRDs v1.6): the header rule the
operator writes into the HTTPRoute at the step (weight 0), and its removal at promotion and at
abort; the API server's refusals of bad header routes, naming the field."""

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

QA = {"name": "qa", "match": [{"headerName": "x-canary", "headerValue": "yes"}]}
STEPS = [{"setHeaderRoute": QA}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


def pinned_manifest(image: str = IMAGES["a"]) -> dict[str, Any]:
    doc = gateway_manifest(image)
    doc["spec"]["strategy"]["canary"]["steps"] = STEPS
    return doc


def header_rules(kube: Storage, namespace: str) -> list[dict[str, Any]]:
    route = kube.get(route_path(namespace)) or {"spec": {"rules": []}}
    return [r for r in route["spec"]["rules"] if r.get("name", "").startswith(f"{NAME}-header-")]


def pinned_at_weight_0(kube: Storage, namespace: str) -> None:
    """A new image, and the rollout at its pause after the setHeaderRoute step: the rule is there."""
    deploy_stable(kube, namespace, pinned_manifest())
    set_image(kube, namespace, IMAGES["b"])
    until_status(kube, namespace, "at the pause after setHeaderRoute", **{"rollout.canary.step": 1})
    (rule,) = header_rules(kube, namespace)
    assert rule["name"] == f"{NAME}-header-qa"
    assert [h for m in rule["matches"] for h in m["headers"]] == [
        {"type": "Exact", "name": "x-canary", "value": "yes"}
    ]
    assert [(b["name"], b["port"]) for b in rule["backendRefs"]] == [(f"{NAME}-canary", 80)]
    assert weights(kube, namespace, rule=1) == (100, 0)  # nobody else reaches the canary
    canary = status(kube, namespace)["rollout"]["canary"]
    assert (canary["weight"], canary["headerRoutes"]) == (0, [QA])


def test_the_header_rule_is_written_at_weight_0_and_removed_at_promotion(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    pinned_at_weight_0(kube, namespace)
    assert f"Header route: qa: x-canary: yes -> {NAME}-canary" in plugin(
        cluster, "status", NAME, "-n", namespace
    )
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "at the pause after 50%", **{"rollout.canary.step": 3})
    assert len(header_rules(kube, namespace)) == 1 and weights(kube, namespace, rule=1) == (50, 50)
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "promoted", phase="Healthy", **{"rollout.canary": None})
    wait_until("the header rule gone", lambda: header_rules(kube, namespace) == [])
    assert weights(kube, namespace) == (100, 0)


def test_the_header_rule_is_removed_at_abort(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    pinned_at_weight_0(kube, namespace)
    plugin(cluster, "abort", NAME, "-n", namespace)
    until_status(kube, namespace, "aborted", phase="Degraded")
    wait_until("the header rule gone", lambda: header_rules(kube, namespace) == [])
    assert weights(kube, namespace) == (100, 0)


@pytest.mark.parametrize(
    ("traffic", "route", "field", "reason"),
    [
        (
            {"router": "service"},
            QA,
            "spec.strategy.canary.steps",
            "setHeaderRoute needs spec.traffic.router gatewayAPI",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud"},
            {"name": "qa", "match": [{"headerName": "x-canary", "headerValue": "yes", "regex": "y.*"}]},
            "spec.strategy.canary.steps[0].setHeaderRoute.match[0]",
            "set exactly one of headerValue or regex",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud"},
            {"name": "qa", "match": [{"headerName": "x-canary"}]},
            "spec.strategy.canary.steps[0].setHeaderRoute.match[0]",
            "set exactly one of headerValue or regex",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud"},
            {"name": "QA team", "match": [{"headerName": "x-canary", "headerValue": "yes"}]},
            "spec.strategy.canary.steps[0].setHeaderRoute.name",
            "should match",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud"},
            {"name": "qa", "match": []},
            "spec.strategy.canary.steps[0].setHeaderRoute.match",
            "at least 1 items",
        ),
    ],
    ids=["service-router", "value-and-regex", "neither", "name-not-a-label", "empty-match"],
)
def test_a_bad_header_route_is_refused_naming_the_field(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    traffic: dict[str, Any],
    route: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    manifest = copy.deepcopy(example("basic.yaml"))
    manifest["spec"]["traffic"] = traffic
    manifest["spec"]["strategy"] = {"canary": {"steps": [{"setHeaderRoute": route}, {"setWeight": 10}]}}
    message = refusal(kube, namespace, manifest)
    assert field in message and reason in message, message


def test_at_most_eight_header_route_steps_are_admitted(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = copy.deepcopy(example("basic.yaml"))
    manifest["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": "fraud"}
    steps = [{"setHeaderRoute": {**QA, "name": f"r{i}"}} for i in range(9)]
    manifest["spec"]["strategy"] = {"canary": {"steps": steps}}
    message = refusal(kube, namespace, manifest)
    assert "spec.strategy.canary.steps: at most 8 setHeaderRoute steps" in message, message
