"""The gatewayAPI router against the real API server (Gateway API CRDs v1.6 are installed):
the HTTPRoute's backendRef weights follow the canary steps exactly."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster
from localworld.rollouts import at
from modelship.kube import storage
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, kube, operator, wait_until
from .test_rollouts import (
    IMAGES,
    NAME,
    deploy_stable,
    manifest,
    plugin,
    revision,
    set_image,
    status,
    until_status,
)

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

ROUTE = "fraud-route"


def route_path(namespace: str, name: str = ROUTE) -> str:
    return storage.route_path(namespace, name)


def weights(kube: Storage, namespace: str, rule: int = 0) -> tuple[int, int] | None:
    route = kube.get(route_path(namespace))
    if route is None:
        return None
    refs = {r["name"]: r.get("weight", 1) for r in route["spec"]["rules"][rule]["backendRefs"]}
    return refs.get(f"{NAME}-stable", 0), refs.get(f"{NAME}-canary", 0)


def condition(kube: Storage, namespace: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in status(kube, namespace).get("conditions", []) if c["type"] == type_), None)


def gateway_manifest(image: str = IMAGES["a"]) -> dict[str, Any]:
    traffic = {"router": "gatewayAPI", "httpRoute": ROUTE, "parentRefs": [{"name": "public-gateway"}]}
    return manifest(image, traffic=traffic)


def test_created_route_carries_each_steps_weights_in_order(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    stable = deploy_stable(kube, namespace, gateway_manifest())
    wait_until("the route created at 100/0", lambda: weights(kube, namespace) == (100, 0))
    route = kube.get(route_path(namespace)) or {}
    assert route["spec"]["parentRefs"][0]["name"] == "public-gateway"
    assert route["metadata"]["ownerReferences"][0]["name"] == NAME

    canary = revision(gateway_manifest(IMAGES["b"]))
    set_image(kube, namespace, IMAGES["b"])
    seen: list[tuple[int, int] | None] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        current = weights(kube, namespace)
        if not seen or seen[-1] != current:
            seen.append(current)
        if current == (50, 50) and at(status(kube, namespace), "rollout.canary.step") == 3:
            break
        time.sleep(0.2)
    assert seen[-1] == (50, 50) and (80, 20) in seen, seen
    assert seen.index((80, 20)) < seen.index((50, 50))
    assert all(s is not None and sum(s) == 100 for s in seen)
    routed = wait_until(
        "TrafficRouted=True",
        lambda: (c := condition(kube, namespace, "TrafficRouted")) and c["status"] == "True" and c,
    )
    assert routed["reason"] == "WeightsSet"
    # The stable revision keeps all its replicas: the route splits the traffic, not pod counts.
    assert status(kube, namespace)["stableRevision"] == stable

    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "promoted", stableRevision=canary, phase="Healthy")
    wait_until("all traffic to the new stable", lambda: weights(kube, namespace) == (100, 0))
    stable_service = kube.get(f"/api/v1/namespaces/{namespace}/services/{NAME}-stable") or {}
    assert stable_service["spec"]["selector"]["modelship.io/revision"] == canary


def test_in_an_existing_route_only_the_managed_rule_changes(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    other_rule = {
        "matches": [{"path": {"type": "PathPrefix", "value": "/other"}}],
        "backendRefs": [{"name": "other-service", "port": 8080}],
    }
    kube.create(
        storage.route_path(namespace),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": ROUTE},
            "spec": {
                "parentRefs": [{"name": "users-gateway"}],
                "rules": [
                    other_rule,
                    {
                        "matches": [{"path": {"type": "PathPrefix", "value": "/fraud"}}],
                        "backendRefs": [{"name": f"{NAME}-stable", "port": 80}],
                    },
                ],
            },
        },
    )
    before = kube.get(route_path(namespace)) or {}
    doc = manifest(traffic={"router": "gatewayAPI", "httpRoute": ROUTE})
    deploy_stable(kube, namespace, doc)
    wait_until("the managed rule at 100/0", lambda: weights(kube, namespace, rule=1) == (100, 0))
    set_image(kube, namespace, IMAGES["b"])
    wait_until("the managed rule at 80/20", lambda: weights(kube, namespace, rule=1) == (80, 20), timeout=90)
    after = kube.get(route_path(namespace)) or {}
    assert after["spec"]["rules"][0] == before["spec"]["rules"][0]
    assert after["spec"]["rules"][1]["matches"] == before["spec"]["rules"][1]["matches"]
    assert after["spec"]["parentRefs"] == before["spec"]["parentRefs"]
    assert "ownerReferences" not in after["metadata"]


def test_a_route_without_our_rule_is_reported_not_touched(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    kube.create(
        storage.route_path(namespace),
        {
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "HTTPRoute",
            "metadata": {"name": ROUTE},
            "spec": {"parentRefs": [{"name": "g"}], "rules": [{"backendRefs": [{"name": "x", "port": 80}]}]},
        },
    )
    before = kube.get(route_path(namespace)) or {}
    deploy_stable(kube, namespace, manifest(traffic={"router": "gatewayAPI", "httpRoute": ROUTE}))
    reported = wait_until("TrafficRouted=False", lambda: condition(kube, namespace, "TrafficRouted"))
    assert (reported["status"], reported["reason"]) == ("False", "RuleNotFound")
    assert (kube.get(route_path(namespace)) or {})["spec"] == before["spec"]
