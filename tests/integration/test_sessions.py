"""Sticky sessions against the real API server (Gateway API CRDs v1.6): the session rules and the
stamps the operator writes into the HTTPRoute at a 50% step, the API server accepting them, the
canary's rule gone at abort and the promoted revision's kept at promotion; the refusals of a bad
spec.traffic.sessionAffinity, naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, example, kube, operator, refusal, wait_until
from .test_gateway_router import gateway_manifest, route_path
from .test_rollouts import IMAGES, NAME, deploy_stable, plugin, set_image, status, until_status

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

STEPS = [{"setWeight": 50}, {"pause": {}}]


def sticky_manifest(affinity: dict[str, Any]) -> dict[str, Any]:
    doc = gateway_manifest(IMAGES["a"])
    doc["spec"]["strategy"]["canary"]["steps"] = STEPS
    doc["spec"]["traffic"]["sessionAffinity"] = affinity
    return doc


def sessions(kube: Storage, namespace: str) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Session rule name -> (its one backend, its first match's headers)."""
    route = kube.get(route_path(namespace)) or {"spec": {"rules": []}}
    return {
        r["name"]: (r["backendRefs"][0]["name"], r["matches"][0]["headers"])
        for r in route["spec"]["rules"]
        if r.get("name", "").startswith(f"{NAME}-session-")
    }


def stamps(kube: Storage, namespace: str) -> dict[str, list[dict[str, Any]]]:
    """The weighted rule's (the last one's) backend -> its filters."""
    route = kube.get(route_path(namespace))
    assert route is not None
    return {ref["name"]: ref.get("filters", []) for ref in route["spec"]["rules"][-1]["backendRefs"]}


def at_50(kube: Storage, namespace: str, affinity: dict[str, Any]) -> tuple[str, str]:
    """A stable revision, a new image, and the rollout at its pause after 50%: (stable, canary)."""
    stable = deploy_stable(kube, namespace, sticky_manifest(affinity))
    set_image(kube, namespace, IMAGES["b"])
    until_status(kube, namespace, "at the pause after 50%", **{"rollout.canary.step": 1})
    canary = status(kube, namespace)["rollout"]["canary"]["revision"]
    return stable, canary


def test_at_50_each_revision_keeps_its_cookie_sessions_and_at_abort_stable_keeps_all(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    stable, canary = at_50(kube, namespace, {"cookie": {"name": "rev"}})
    rules = sessions(kube, namespace)
    assert rules == {
        f"{NAME}-session-stable": (
            f"{NAME}-stable",
            [{"type": "RegularExpression", "name": "Cookie", "value": rf"^(.*;\s*)?rev={stable}(\s*;.*)?$"}],
        ),
        f"{NAME}-session-canary": (
            f"{NAME}-canary",
            [{"type": "RegularExpression", "name": "Cookie", "value": rf"^(.*;\s*)?rev={canary}(\s*;.*)?$"}],
        ),
    }
    cookies = {
        backend: [h["value"] for f in filters for h in f["responseHeaderModifier"]["add"]]
        for backend, filters in stamps(kube, namespace).items()
    }
    assert cookies == {
        f"{NAME}-stable": [f"rev={stable}; Path=/; HttpOnly"],
        f"{NAME}-canary": [f"rev={canary}; Path=/; HttpOnly"],
    }
    plugin(cluster, "abort", NAME, "-n", namespace)
    until_status(kube, namespace, "aborted", phase="Degraded")
    wait_until(
        "the canary's session rule gone",
        lambda: list(sessions(kube, namespace)) == [f"{NAME}-session-stable"],
    )
    assert list(stamps(kube, namespace)[f"{NAME}-stable"]) and not stamps(kube, namespace)[f"{NAME}-canary"]


def test_header_sessions_and_at_promotion_the_promoted_revision_keeps_stables(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    _, canary = at_50(kube, namespace, {"header": {}})
    assert sessions(kube, namespace)[f"{NAME}-session-canary"] == (
        f"{NAME}-canary",
        [{"type": "Exact", "name": "x-modelship-revision", "value": canary}],
    )
    assert stamps(kube, namespace)[f"{NAME}-canary"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-modelship-revision", "value": canary}]},
        }
    ]
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "promoted", phase="Healthy", **{"rollout.canary": None})
    wait_until(
        "the promoted revision keeping stable's sessions",
        lambda: (
            sessions(kube, namespace)
            == {
                f"{NAME}-session-stable": (
                    f"{NAME}-stable",
                    [{"type": "Exact", "name": "x-modelship-revision", "value": canary}],
                )
            }
        ),
    )


@pytest.mark.parametrize(
    ("traffic", "field", "reason"),
    [
        (
            {"router": "service", "sessionAffinity": {"cookie": {}}},
            "spec.traffic.sessionAffinity",
            "needs spec.traffic.router gatewayAPI",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud", "sessionAffinity": {"cookie": {}, "header": {}}},
            "spec.traffic.sessionAffinity",
            "set exactly one of cookie or header",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud", "sessionAffinity": {}},
            "spec.traffic.sessionAffinity",
            "set exactly one of cookie or header",
        ),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud", "sessionAffinity": {"cookie": {"name": "a;b"}}},
            "spec.traffic.sessionAffinity.cookie.name",
            "should match",
        ),
    ],
    ids=["service-router", "both", "neither", "cookie-name"],
)
def test_a_bad_session_affinity_is_refused_naming_the_field(
    kube: Storage, namespace: str, crd_installed: None, traffic: dict[str, Any], field: str, reason: str
) -> None:
    manifest = copy.deepcopy(example("basic.yaml"))
    manifest["spec"]["traffic"] = traffic
    message = refusal(kube, namespace, manifest)
    assert field in message and reason in message, message
