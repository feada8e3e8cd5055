"""The gatewayAPI router's pure rules: weights, the route it creates, the rule it manages, read-back."""

from __future__ import annotations

from typing import Any

import pytest

from modelship import api
from modelship.core import gateway

from .enginesim import OWNER

pytestmark = pytest.mark.unit


def user_route() -> dict[str, Any]:
    return {
        "metadata": {"name": "shop"},
        "spec": {
            "parentRefs": [{"name": "public"}],
            "rules": [
                {"matches": [{"path": {"value": "/other"}}], "backendRefs": [{"name": "other", "port": 80}]},
                {
                    "matches": [{"path": {"value": "/fraud"}}],
                    "backendRefs": [{"name": "fraud-stable", "port": 80}],
                },
            ],
        },
    }


@pytest.mark.parametrize("weight", [0, 1, 20, 50, 99, 100])
def test_weights_are_integers_in_range_summing_to_100(weight: int) -> None:
    wanted = gateway.weights("fraud", weight)
    assert wanted == {"fraud-stable": 100 - weight, "fraud-canary": weight}
    assert sum(wanted.values()) == 100 and all(0 <= w <= 100 for w in wanted.values())


def test_created_route_attaches_to_the_users_parents_with_both_services() -> None:
    parents = [api.ParentRef(name="public", section_name="https")]
    route = gateway.route(OWNER, "fraud", parents, gateway.weights("fraud", 20))
    assert route["spec"]["parentRefs"] == [{"name": "public", "sectionName": "https"}]
    (rule,) = route["spec"]["rules"]
    assert [(r["name"], r["port"], r["weight"]) for r in rule["backendRefs"]] == [
        ("fraud-stable", 80, 80),
        ("fraud-canary", 80, 20),
    ]
    assert route["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid


def test_in_a_users_route_only_the_rule_naming_our_services_is_managed() -> None:
    route = user_route()
    assert gateway.managed_rule(route, "fraud") == 1
    assert gateway.managed_rule(route, "recommender") is None
    assert gateway.read_weights(route, "fraud") == {"fraud-stable": 1}  # Gateway API's default weight


def test_traffic_condition_reports_a_mismatch_a_missing_rule_and_success() -> None:
    wanted = gateway.weights("fraud", 20)
    assert gateway.traffic_condition("shop", wanted, dict(wanted))[:2] == ("True", "WeightsSet")
    mismatch = gateway.traffic_condition("shop", wanted, {"fraud-stable": 100, "fraud-canary": 0})
    assert mismatch[:2] == ("False", "WeightMismatch")
    assert gateway.traffic_condition("shop", wanted, None)[:2] == ("False", "RuleNotFound")


def test_a_route_is_accepted_when_every_reporting_gateway_accepted_its_current_generation() -> None:
    def route(generation: int, *parents: tuple[str, int]) -> dict[str, Any]:
        entries = [
            {
                "controllerName": "example.io/gw",
                "conditions": [{"type": "Accepted", "status": s, "observedGeneration": g}],
            }
            for s, g in parents
        ]
        return {"metadata": {"generation": generation}, "status": {"parents": entries}}

    assert gateway.accepted({"metadata": {"generation": 3}}) is None  # no gateway reports on it
    assert gateway.accepted(route(3)) is None
    assert gateway.accepted(route(3, ("True", 3))) is True
    assert gateway.accepted(route(4, ("True", 3))) is False  # changed since: not seen yet
    assert gateway.accepted(route(3, ("False", 3))) is False  # refused
    assert gateway.accepted(route(3, ("True", 3), ("True", 2))) is False  # one gateway behind


def test_a_missing_managed_rule_is_named_as_each_kind_of_route_calls_it() -> None:
    wanted = gateway.weights("fraud", 20)
    http = gateway.traffic_condition("shop", wanted, None)[2]
    vs = gateway.traffic_condition("shop", wanted, None, "VirtualService")[2]
    assert http.startswith("HTTPRoute shop has no rule with a backendRef to fraud-stable")
    assert vs.startswith("VirtualService shop has no managed HTTP route with a destination to fraud-stable")
    assert gateway.rule_noun("VirtualService") in vs and gateway.rule_noun("HTTPRoute") in http
