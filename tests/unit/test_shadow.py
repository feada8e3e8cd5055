"""Shadow steps: the weighted rule's filter that marks requests for the stable pods to copy
(rendering, merging into a user's filter, reading back), the step in the engine (a canary pod at
weight 0, verified read-back, gone at promotion and abort), the pods' env, and admission."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelship import api
from modelship.core import gateway, notifications, shadow
from modelship.core.manifests import deployment
from modelship.core.shadow import Shadow

from .enginesim import OWNER, World, command
from .test_canary import NEW_IMAGE, canary_spec, condition, name_of, replicas, stable_world
from .test_gateway import user_route

pytestmark = pytest.mark.unit

HALF = Shadow(50, "fraud-3f2a9c1e0b")
STEPS: list[dict[str, Any]] = [{"shadow": {"percent": 50}}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]


def spec_of(image: str | None = None, steps: list[dict[str, Any]] = STEPS) -> api.ModelDeploymentSpec:
    s: api.ModelDeploymentSpec = canary_spec(
        image, router="gatewayAPI", strategy={"canary": {"steps": steps}}
    )
    return s


def weighted(rules: list[dict[str, Any]]) -> dict[str, Any]:
    index = gateway.managed_rule({"spec": {"rules": rules}}, "fraud")
    assert index is not None
    return rules[index]


def test_the_weighted_rule_sets_both_headers_during_a_shadow_and_removes_them_otherwise() -> None:
    route = gateway.route(OWNER, "fraud", [api.ParentRef(name="public")], gateway.weights("fraud", 0))
    marked = shadow.marked(route, "fraud", HALF)
    assert weighted(marked["spec"]["rules"])["filters"] == [
        {
            "type": "RequestHeaderModifier",
            "requestHeaderModifier": {
                "set": [
                    {"name": "x-modelship-shadow-percent", "value": "50"},
                    {"name": "x-modelship-shadow-revision", "value": "fraud-3f2a9c1e0b"},
                ]
            },
        }
    ]
    assert shadow.read(marked, "fraud") == HALF
    plain = shadow.marked(route, "fraud", None)
    modifier = weighted(plain["spec"]["rules"])["filters"][0]["requestHeaderModifier"]
    # A client's copy of the headers never reaches a pod: the gateway removes it.
    assert modifier == {"remove": ["x-modelship-shadow-percent", "x-modelship-shadow-revision"]}
    assert shadow.read(plain, "fraud") is None
    assert "filters" not in route["spec"]["rules"][0]  # the manifest given is not changed


def test_in_a_users_route_our_headers_join_the_users_own_header_filter() -> None:
    route = user_route()
    theirs = {"set": [{"name": "x-team", "value": "risk"}], "remove": ["x-debug"]}
    route["spec"]["rules"][1]["filters"] = [
        {"type": "RequestHeaderModifier", "requestHeaderModifier": theirs},
        {
            "type": "URLRewrite",
            "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}},
        },
    ]
    rules = shadow.mark(route["spec"]["rules"], "fraud", HALF)
    assert rules[0] == route["spec"]["rules"][0]  # someone else's rule, as it was
    filters = weighted(rules)["filters"]
    assert filters[1] == route["spec"]["rules"][1]["filters"][1]
    assert filters[0]["requestHeaderModifier"] == {
        "set": [
            {"name": "x-team", "value": "risk"},
            {"name": "x-modelship-shadow-percent", "value": "50"},
            {"name": "x-modelship-shadow-revision", "value": "fraud-3f2a9c1e0b"},
        ],
        "remove": ["x-debug"],
    }
    # The shadow stopped: the user's entries stay, ours become removals (written again: no change).
    stopped = shadow.mark(rules, "fraud", None)
    assert weighted(stopped)["filters"][0]["requestHeaderModifier"] == {
        "set": [{"name": "x-team", "value": "risk"}],
        "remove": ["x-debug", "x-modelship-shadow-percent", "x-modelship-shadow-revision"],
    }
    assert shadow.mark(stopped, "fraud", None) == stopped
    assert shadow.mark(route["spec"]["rules"], "recommender", HALF) == route["spec"]["rules"]  # not ours


def test_a_percent_of_0_or_a_mark_without_a_revision_is_no_shadow() -> None:
    route = gateway.route(OWNER, "fraud", [], gateway.weights("fraud", 0))
    assert shadow.read(shadow.marked(route, "fraud", Shadow(0, "fraud-1")), "fraud") is None
    rule = weighted(shadow.marked(route, "fraud", HALF)["spec"]["rules"])
    rule["filters"][0]["requestHeaderModifier"]["set"].pop()
    assert shadow.read({"spec": {"rules": [rule]}}, "fraud") is None


def test_pods_copy_to_the_canary_service_and_know_their_revision() -> None:
    s = spec_of()
    from modelship.core import revisions

    template = revisions.template_of(s)
    manifest = deployment(OWNER, revisions.revision_name("fraud", template), template, 4)
    env = {e["name"]: e for e in manifest["spec"]["template"]["spec"]["containers"][0]["env"]}
    # The Service's cluster IP from the variable Kubernetes sets (no cluster DNS needed), else DNS.
    assert env["SHADOW_TARGET"]["value"] == "$(FRAUD_CANARY_SERVICE_HOST):80,fraud-canary:80"
    assert env["MODELSHIP_REVISION"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.labels['modelship.io/revision']"}
    }


def start() -> tuple[World, api.ModelDeploymentSpec, api.ModelDeploymentSpec]:
    old = spec_of()
    world = stable_world(old)
    world.list_endpoints()
    return world, old, spec_of(NEW_IMAGE)


def walk(world: World, s: api.ModelDeploymentSpec, passes: int = 4) -> None:
    for _ in range(passes):
        world.reconcile(s)
        world.settle()
        world.list_endpoints()


def test_the_step_marks_requests_for_the_candidate_at_weight_0_once_the_route_shows_it() -> None:
    world, old, new = start()
    world.route_stuck = True  # the route keeps what it had: the step must not complete
    walk(world, new)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight, canary.shadow_percent) == (0, 0, 50)
    assert "show the shadow asked for" in condition(world.status, "Progressing").message
    assert replicas(world) == {name_of(old): 4, name_of(new): 1}  # a candidate pod to copy to
    world.route_stuck = False
    walk(world, new, 2)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight) == (1, 0)  # at the pause, users on stable
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    assert world.route_shadow == Shadow(50, name_of(new))
    # A completed step like a setWeight's: told to the on-call channel as StepCompleted.
    assert notifications.trigger("ShadowSet") == "StepCompleted"
    told = [e.message for e in world.events if e.reason == "ShadowSet"]
    assert told == [
        "step 1/4: the stable pods copy 50% of their requests to fraud-canary and compare its answers"
    ]


def test_the_shadow_stays_through_weight_steps_and_goes_at_promotion() -> None:
    world, _, new = start()
    walk(world, new)
    new, world.status = command("promote", new, world.status)
    walk(world, new)
    assert world.route == {"fraud-stable": 50, "fraud-canary": 50}
    assert world.route_shadow == Shadow(50, name_of(new))
    new, world.status = command("promote", new, world.status)
    walk(world, new)
    assert world.status.phase == "Healthy" and world.status.stable_revision == name_of(new)
    assert world.route_shadow is None


def test_an_abort_stops_the_shadow() -> None:
    world, _, new = start()
    walk(world, new)
    assert world.route_shadow is not None
    new, world.status = command("abort", new, world.status)
    decision = world.decide(new)
    assert decision.route is not None and decision.route.shadow is None


def test_a_shadow_step_of_0_stops_it() -> None:
    steps: list[dict[str, Any]] = [{"shadow": {"percent": 50}}, {"shadow": {"percent": 0}}, {"pause": {}}]
    world = stable_world(spec_of(steps=steps))
    world.list_endpoints()
    new = spec_of(NEW_IMAGE, steps)
    walk(world, new, 6)
    canary = world.status.canary
    assert canary is not None and canary.step == 2 and canary.shadow_percent is None
    assert world.route_shadow is None
    assert [e.message.split(": ", 1)[1] for e in world.events if e.reason == "ShadowSet"][-1] == (
        "shadow traffic stopped"
    )


def test_a_shadow_percent_is_0_to_100() -> None:
    with pytest.raises(ValidationError, match="less than or equal to 100"):
        api.ShadowStep.model_validate({"percent": 101})
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        api.ShadowStep.model_validate({"percent": -1})


def test_modelships_header_and_session_rules_carry_the_mark_or_strip_a_clients() -> None:
    """A header or session rule may reach a stable pod too: each sets or removes the mark like the
    weighted rule, so no rule of modelship's lets a client's own copy of the headers through."""
    affinity = api.SessionAffinity.model_validate({"cookie": {}})
    pinned = {"fraud-stable": "fraud-1111111", "fraud-canary": "fraud-2222222"}
    qa = api.HeaderRoute.model_validate({"name": "qa", "match": [{"headerName": "x-qa", "headerValue": "1"}]})
    rules = gateway.with_headers(user_route(), "fraud", gateway.weights("fraud", 20), [qa], affinity, pinned)
    assert rules is not None
    ours = [r for r in rules if gateway.is_ours(r, "fraud")]
    assert len(ours) == 3  # the header rule and two session rules
    for mark in (HALF, None):
        marked = shadow.mark(rules, "fraud", mark)
        for rule in [*(r for r in marked if gateway.is_ours(r, "fraud")), weighted(marked)]:
            (modifier,) = [f["requestHeaderModifier"] for f in rule["filters"] if f["type"] == shadow.FILTER]
            if mark is None:
                assert modifier == {"remove": [shadow.PERCENT_HEADER, shadow.REVISION_HEADER]}
            else:
                assert [h["value"] for h in modifier["set"]] == ["50", HALF.revision]
        assert marked[0] == user_route()["spec"]["rules"][0]  # the user's other rule is not touched
