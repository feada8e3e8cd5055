"""setHeaderRoute: the HTTPRoute rules that pin requests with given headers to `<name>-canary`
(rendering, reading back), and the step's rules in the engine (weight 0, verified read-back,
removal at promotion, abort and a new digest, the canary Service held while a rule may send to it)."""

from __future__ import annotations

from typing import Any

import pytest

from modelship import api, plugin
from modelship.core import engine, gateway, notifications

from .enginesim import OWNER, World, command
from .test_canary import NEW_IMAGE, THIRD_IMAGE, canary_spec, condition, name_of, replicas, stable_world
from .test_gateway import user_route

pytestmark = pytest.mark.unit

QA = api.HeaderRoute.model_validate(
    {"name": "qa", "match": [{"headerName": "x-canary", "headerValue": "yes"}]}
)
STAFF = api.HeaderRoute.model_validate(
    {
        "name": "staff",
        "match": [{"headerName": "x-user", "regex": "^qa-.*"}, {"headerName": "x-b", "headerValue": "1"}],
    }
)
PINNED: list[dict[str, Any]] = [
    {"setHeaderRoute": api.dump(QA)},
    {"pause": {}},
    {"setWeight": 50},
    {"pause": {}},
]


def pinned_spec(image: str | None = None, steps: list[dict[str, Any]] = PINNED) -> api.ModelDeploymentSpec:
    s: api.ModelDeploymentSpec = canary_spec(
        image, router="gatewayAPI", strategy={"canary": {"steps": steps}}
    )
    return s


def test_a_created_route_has_one_rule_per_header_route_before_the_weighted_rule() -> None:
    route = gateway.route(
        OWNER, "fraud", [api.ParentRef(name="public")], gateway.weights("fraud", 0), (QA, STAFF)
    )
    qa, staff, weighted = route["spec"]["rules"]
    assert qa == {
        "name": "fraud-header-qa",
        "matches": [{"headers": [{"type": "Exact", "name": "x-canary", "value": "yes"}]}],
        "backendRefs": [{"group": "", "kind": "Service", "name": "fraud-canary", "port": 80, "weight": 1}],
    }
    assert staff["matches"] == [
        {
            "headers": [  # both must match: one match, its headers ANDed
                {"type": "Exact", "name": "x-b", "value": "1"},
                {"type": "RegularExpression", "name": "x-user", "value": "^qa-.*"},
            ]
        }
    ]
    assert [r["name"] for r in weighted["backendRefs"]] == ["fraud-stable", "fraud-canary"]
    assert gateway.managed_rule(route, "fraud") == 2  # the weighted rule, never a header rule
    assert gateway.read_weights(route, "fraud") == {"fraud-stable": 100, "fraud-canary": 0}
    assert gateway.read_headers(route, "fraud") == {
        "qa": gateway.header_triples(QA),
        "staff": gateway.header_triples(STAFF),
    }


def test_in_a_users_route_header_rules_repeat_the_managed_rules_path_and_go_just_before_it() -> None:
    route = user_route()
    rules = gateway.with_headers(route, "fraud", gateway.weights("fraud", 10), (QA,))
    assert rules is not None
    other, qa, managed = rules
    assert other == route["spec"]["rules"][0]  # someone else's rule, as it was
    assert qa["name"] == "fraud-header-qa"
    assert qa["matches"] == [
        {"path": {"value": "/fraud"}, "headers": [{"type": "Exact", "name": "x-canary", "value": "yes"}]}
    ]
    assert managed["matches"] == [{"path": {"value": "/fraud"}}]
    assert {r["name"]: r["weight"] for r in managed["backendRefs"]} == {
        "fraud-stable": 90,
        "fraud-canary": 10,
    }
    # Written again without it: our header rule goes, nothing else changes.
    written = {"spec": {"rules": rules}}
    assert gateway.with_headers(written, "fraud", gateway.weights("fraud", 10), ()) == [other, managed]
    assert gateway.read_headers(written, "fraud") == {"qa": gateway.header_triples(QA)}
    assert gateway.read_headers(written, "recommender") == {}
    assert gateway.with_headers(route, "recommender", {}, (QA,)) is None  # no rule of its own


def test_headers_the_managed_rule_matches_on_are_not_read_as_the_header_routes() -> None:
    route = user_route()
    route["spec"]["rules"][1]["matches"][0]["headers"] = [{"type": "Exact", "name": "x-tenant", "value": "a"}]
    rules = gateway.with_headers(route, "fraud", gateway.weights("fraud", 0), (QA,))
    assert rules is not None
    assert rules[1]["matches"][0]["headers"] == [
        {"type": "Exact", "name": "x-tenant", "value": "a"},  # the weighted rule's, kept
        {"type": "Exact", "name": "x-canary", "value": "yes"},
    ]
    assert gateway.read_headers({"spec": {"rules": rules}}, "fraud") == gateway.headers_of([QA])


def test_a_header_rule_edited_to_send_elsewhere_is_not_read_as_ours() -> None:
    route = gateway.route(OWNER, "fraud", [], gateway.weights("fraud", 0), (QA,))
    route["spec"]["rules"][0]["backendRefs"][0]["name"] = "fraud-stable"
    assert gateway.read_headers(route, "fraud") == {}


def start(
    steps: list[dict[str, Any]] = PINNED,
) -> tuple[World, api.ModelDeploymentSpec, api.ModelDeploymentSpec]:
    """A stable gatewayAPI world whose spec now asks for a new image, and its EndpointSlices."""
    old = pinned_spec(steps=steps)
    world = stable_world(old)
    world.list_endpoints()
    return world, old, pinned_spec(NEW_IMAGE, steps)


def walk(world: World, s: api.ModelDeploymentSpec, passes: int = 4) -> None:
    for _ in range(passes):
        world.reconcile(s)
        world.settle()
        world.list_endpoints()


def test_the_step_pins_header_requests_to_the_canary_at_weight_0_once_the_route_shows_the_rule() -> None:
    world, old, new = start()
    world.route_stuck = True  # the route keeps what it had: the step must not complete
    walk(world, new)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight) == (0, 0)
    assert canary.header_routes == [QA]  # asked for, in the status
    assert (
        "show the header rules asked for (fraud-header-qa)" in condition(world.status, "Progressing").message
    )
    assert replicas(world) == {name_of(old): 4, name_of(new): 1}  # a pod to pin to, at weight 0
    world.route_stuck = False
    walk(world, new, 2)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight) == (1, 0)  # at the pause, still weight 0
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    assert world.route_headers == {"qa": gateway.header_triples(QA)}
    set_events = [e.message for e in world.events if e.reason == "HeaderRouteSet"]
    assert set_events == ["step 1/4: requests with x-canary: yes go to fraud-canary (fraud-header-qa)"]
    # A completed step like a setWeight's: told to the on-call channel as StepCompleted.
    assert {notifications.trigger(e.reason) for e in world.events if e.reason == "HeaderRouteSet"} == {
        "StepCompleted"
    }


def test_the_header_route_waits_for_the_canary_service_to_list_a_ready_pod() -> None:
    world, _, new = start()
    world.reconcile(new)
    world.settle()
    world.reconcile(new)  # the pod is available; the slices, listed before, do not show it yet
    assert world.route_headers == {}
    assert world.status.canary is not None and world.status.canary.header_routes is None
    assert (
        f"Service fraud-canary to list a ready pod of {name_of(new)}"
        in condition(world.status, "Progressing").message
    )
    world.list_endpoints()
    world.reconcile(new)
    assert world.route_headers == {"qa": gateway.header_triples(QA)}


def test_header_routes_stay_through_weight_steps_and_go_at_promotion() -> None:
    world, _, new = start()
    walk(world, new)
    new, world.status = command("promote", new, world.status)
    walk(world, new)
    assert world.route == {"fraud-stable": 50, "fraud-canary": 50}
    assert world.route_headers == {"qa": gateway.header_triples(QA)}  # beside the weights
    new, world.status = command("promote", new, world.status)
    walk(world, new)
    assert world.status.phase == "Healthy" and world.status.stable_revision == name_of(new)
    assert world.route_headers == {}
    assert world.decide(new).route == gateway_route(100, 0)


def gateway_route(stable: int, canary: int) -> engine.Route:
    return engine.Route({"fraud-stable": stable, "fraud-canary": canary})


def test_an_abort_removes_the_header_rule_and_pinned_requests_go_to_stable() -> None:
    world, old, new = start()
    walk(world, new)
    assert world.route_headers
    new, world.status = command("abort", new, world.status)
    decision = world.decide(new)
    assert decision.status.aborted is not None and decision.status.canary is None
    assert decision.route == gateway_route(100, 0)  # no header rule
    # `<name>-canary` moves to stable's ready pods at once: a request still pinned meanwhile is
    # served by stable, never by the aborted canary.
    svc = next(m for m in decision.apply if m["metadata"]["name"] == "fraud-canary")
    assert svc["spec"]["selector"]["modelship.io/revision"] == name_of(old)
    world.apply(decision)
    assert world.route_headers == {}


def test_a_later_step_without_match_removes_the_header_route_of_its_name() -> None:
    steps: list[dict[str, Any]] = [
        {"setHeaderRoute": api.dump(QA)},
        {"setHeaderRoute": api.dump(STAFF)},
        {"pause": {}},
        {"setHeaderRoute": {"name": "qa"}},
        {"pause": {}},
    ]
    world, _, new = start(steps)
    walk(world, new)
    assert world.status.canary is not None and world.status.canary.step == 2
    assert set(world.route_headers) == {"qa", "staff"}
    new, world.status = command("promote", new, world.status)
    walk(world, new)
    assert world.status.canary is not None and world.status.canary.step == 4
    assert world.status.canary.header_routes == [STAFF]
    assert set(world.route_headers) == {"staff"}
    assert any(e.message.endswith("header route qa removed") for e in world.events)


def test_a_new_digest_drops_the_header_rule_and_holds_the_canary_service_until_the_route_shows_it_gone() -> (
    None
):
    world, _, first = start()
    walk(world, first)
    world.gateway_accepted = True
    second = pinned_spec(THIRD_IMAGE)

    def canary_service(decision: Any) -> str:
        svc = next(m for m in decision.apply if m["metadata"]["name"] == "fraud-canary")
        return str(svc["spec"]["selector"]["modelship.io/revision"])

    world.route_stuck = True  # the header rule is still there as read
    decision = world.decide(second)
    assert decision.route is not None and decision.route.headers == ()
    assert decision.writes[0] == decision.route  # the rule goes first
    assert canary_service(decision) == name_of(first) and name_of(first) in replicas(world)
    assert name_of(first) not in decision.delete
    world.apply(decision)
    world.route_stuck = False
    world.route_headers = {}
    decision = world.decide(second)
    assert canary_service(decision) == name_of(second)
    assert decision.delete == (name_of(first),)


def test_the_plugins_status_view_lists_the_header_routes_in_effect() -> None:
    s = pinned_spec(NEW_IMAGE)
    canary = {"revision": "fraud-bbb", "step": 1, "headerRoutes": [api.dump(QA), api.dump(STAFF)]}
    md = {
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": api.dump(s),
        "status": {"phase": "Paused", "stableRevision": "fraud-aaa", "rollout": {"canary": canary}},
    }
    view = plugin.render(md, [])
    assert "Header route: qa: x-canary: yes -> fraud-canary" in view
    assert "Header route: staff: x-user ~ ^qa-.* and x-b: 1 -> fraud-canary" in view
