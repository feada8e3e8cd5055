"""Sticky sessions (spec.traffic.sessionAffinity) through Gateway API rules: the stamps on each
weighted backend, the session rules and their order (rendering, reading back), and what the engine
asks for through a rollout (kept while weights move, the canary's gone at abort, the promoted
revision's at promotion)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from modelship import api, plugin
from modelship.core import engine, gateway
from modelship.core.engine.writes import ordered

from .enginesim import OWNER, World, command
from .test_canary import NEW_IMAGE, canary_spec, condition, name_of, stable_world
from .test_gateway import user_route
from .test_header_routes import QA

pytestmark = pytest.mark.unit

COOKIE = api.SessionAffinity.model_validate({"cookie": {}})
HEADER = api.SessionAffinity.model_validate({"header": {"name": "x-rev"}})
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 80}, {"pause": {}}]
BOTH = {"fraud-stable": "fraud-aaa", "fraud-canary": "fraud-bbb"}


def sticky_spec(image: str | None = None, affinity: dict[str, Any] | None = None) -> api.ModelDeploymentSpec:
    s: api.ModelDeploymentSpec = canary_spec(
        image,
        router="gatewayAPI",
        strategy={"canary": {"steps": STEPS}},
        traffic={
            "router": "gatewayAPI",
            "httpRoute": "fraud",
            "sessionAffinity": affinity if affinity is not None else {"cookie": {}},
        },
    )
    return s


def test_the_defaults_name_the_cookie_and_the_header() -> None:
    assert COOKIE.cookie is not None and COOKIE.cookie.name == "modelship-revision"
    header = api.SessionAffinity.model_validate({"header": {}})
    assert header.header is not None and header.header.name == "x-modelship-revision"


@pytest.mark.parametrize("name", ["a b", "a;b", "a=b", "a.b", ""])
def test_a_cookie_name_that_would_need_escaping_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        api.SessionAffinity.model_validate({"cookie": {"name": name}})


def test_only_backends_with_weight_keep_sessions() -> None:
    assert gateway.sessions("fraud", gateway.weights("fraud", 50), "fraud-aaa", "fraud-bbb") == BOTH
    assert gateway.sessions("fraud", gateway.weights("fraud", 0), "fraud-aaa", "fraud-bbb") == {
        "fraud-stable": "fraud-aaa"
    }
    assert gateway.sessions("fraud", gateway.weights("fraud", 100), "fraud-aaa", "fraud-bbb") == {
        "fraud-canary": "fraud-bbb"
    }
    assert gateway.sessions("fraud", gateway.weights("fraud", 0), "fraud-aaa", None) == {
        "fraud-stable": "fraud-aaa"
    }


def test_a_created_route_has_header_rules_then_session_rules_then_the_stamped_weighted_rule() -> None:
    route = gateway.route(
        OWNER, "fraud", [api.ParentRef(name="public")], gateway.weights("fraud", 50), (QA,), COOKIE, BOTH
    )
    rules = route["spec"]["rules"]
    assert [r.get("name") for r in rules] == [
        "fraud-header-qa",
        "fraud-session-stable",
        "fraud-session-canary",
        None,
    ]
    stable_rule = rules[1]
    assert stable_rule["matches"] == [
        {
            "headers": [
                {
                    "type": "RegularExpression",
                    "name": "Cookie",
                    "value": r"^(.*;\s*)?modelship-revision=fraud-aaa(\s*;.*)?$",
                }
            ]
        }
    ]
    stamp_a = {
        "type": "ResponseHeaderModifier",
        "responseHeaderModifier": {
            "add": [{"name": "Set-Cookie", "value": "modelship-revision=fraud-aaa; Path=/; HttpOnly"}]
        },
    }
    assert stable_rule["backendRefs"] == [
        {
            "group": "",
            "kind": "Service",
            "name": "fraud-stable",
            "port": 80,
            "weight": 1,
            "filters": [stamp_a],
        }
    ]
    weighted = {r["name"]: r for r in rules[3]["backendRefs"]}
    assert weighted["fraud-stable"]["filters"] == [stamp_a]
    assert weighted["fraud-canary"]["filters"][0]["responseHeaderModifier"]["add"][0]["value"].startswith(
        "modelship-revision=fraud-bbb;"
    )
    assert "filters" not in rules[0]["backendRefs"][0]  # the header route's rule is as it was
    assert gateway.managed_rule(route, "fraud") == 3
    assert gateway.read_weights(route, "fraud") == {"fraud-stable": 50, "fraud-canary": 50}
    assert gateway.read_headers(route, "fraud") == gateway.headers_of([QA])  # no session rule among them
    assert gateway.read_sessions(route, "fraud", COOKIE) == BOTH


@pytest.mark.parametrize(
    ("cookie", "kept"),
    [
        ("modelship-revision=fraud-aaa", True),
        ("a=1; modelship-revision=fraud-aaa", True),
        ("a=1;modelship-revision=fraud-aaa; b=2", True),
        ("modelship-revision=fraud-aaa ; b=2", True),
        ("modelship-revision=fraud-aaa2", False),  # another revision whose name starts the same
        ("xmodelship-revision=fraud-aaa", False),  # another cookie whose name ends the same
        ("a=modelship-revision=fraud-aaa", False),
        ("modelship-revision=fraud-bbb", False),
        ("", False),
    ],
)
def test_the_cookie_match_reads_alike_to_gateways_that_search_and_that_match_whole(
    cookie: str, kept: bool
) -> None:
    pattern = gateway.session_match(COOKIE, "fraud-aaa")["value"]
    assert bool(re.search(pattern, cookie)) is kept  # Traefik: Go's regexp.MatchString
    assert bool(re.fullmatch(pattern, cookie)) is kept  # Envoy: the whole value


def test_header_sessions_match_the_header_exactly_and_set_it_on_answers() -> None:
    route = gateway.route(OWNER, "fraud", [], gateway.weights("fraud", 50), (), HEADER, BOTH)
    canary_rule = route["spec"]["rules"][1]
    assert canary_rule["name"] == "fraud-session-canary"
    assert canary_rule["matches"] == [{"headers": [{"type": "Exact", "name": "x-rev", "value": "fraud-bbb"}]}]
    assert canary_rule["backendRefs"][0]["filters"] == [
        {
            "type": "ResponseHeaderModifier",
            "responseHeaderModifier": {"set": [{"name": "x-rev", "value": "fraud-bbb"}]},
        }
    ]
    assert gateway.read_sessions(route, "fraud", HEADER) == BOTH
    assert gateway.read_sessions(route, "fraud", COOKIE) == {}  # another affinity's rules are not these


def test_without_affinity_the_route_is_as_before() -> None:
    plain = gateway.route(OWNER, "fraud", [], gateway.weights("fraud", 50), (QA,))
    assert gateway.route(OWNER, "fraud", [], gateway.weights("fraud", 50), (QA,), None, BOTH) == plain
    assert gateway.read_sessions(plain, "fraud", COOKIE) == {}


def test_in_a_users_route_session_rules_repeat_the_path_after_header_rules_and_go_when_turned_off() -> None:
    route = user_route()
    rules = gateway.with_headers(route, "fraud", gateway.weights("fraud", 50), (QA,), COOKIE, BOTH)
    assert rules is not None
    assert [r.get("name") for r in rules] == [
        None,
        "fraud-header-qa",
        "fraud-session-stable",
        "fraud-session-canary",
        None,
    ]
    assert rules[0] == route["spec"]["rules"][0]  # someone else's rule, as it was
    assert rules[3]["matches"][0]["path"] == {"value": "/fraud"}
    assert rules[3]["matches"][0]["headers"] == [gateway.session_match(COOKIE, "fraud-bbb")]
    written = {"spec": {"rules": rules}}
    assert gateway.read_sessions(written, "fraud", COOKIE) == BOTH
    # The canary loses its weight: its session rule and stamp go; stable's stay.
    only_stable = {"fraud-stable": "fraud-aaa"}
    fewer = gateway.with_headers(written, "fraud", gateway.weights("fraud", 0), (), COOKIE, only_stable)
    assert fewer is not None
    assert [r.get("name") for r in fewer] == [None, "fraud-session-stable", None]
    assert gateway.read_sessions({"spec": {"rules": fewer}}, "fraud", COOKIE) == only_stable
    # Turned off: no session rule, no stamp.
    off = gateway.with_headers(written, "fraud", gateway.weights("fraud", 0), ())
    assert off is not None and [r.get("name") for r in off] == [None, None]
    assert all("filters" not in ref for ref in off[1]["backendRefs"])


def test_a_session_rule_whose_stamp_was_edited_is_not_read_as_kept() -> None:
    route = gateway.route(OWNER, "fraud", [], gateway.weights("fraud", 50), (), COOKIE, BOTH)
    route["spec"]["rules"][1]["backendRefs"][0]["filters"] = []  # the canary's answers no longer say so
    assert gateway.read_sessions(route, "fraud", COOKIE) == {"fraud-stable": "fraud-aaa"}
    route["spec"]["rules"][0]["matches"][0]["headers"][0]["value"] = "^modelship-revision=other$"
    assert gateway.read_sessions(route, "fraud", COOKIE) == {}


# ---- the engine -------------------------------------------------------------------------------


def start(
    affinity: dict[str, Any] | None = None,
) -> tuple[World, api.ModelDeploymentSpec, api.ModelDeploymentSpec]:
    old = sticky_spec(affinity=affinity)
    world = stable_world(old)
    world.list_endpoints()
    return world, old, sticky_spec(NEW_IMAGE, affinity)


def walk(world: World, s: api.ModelDeploymentSpec, passes: int = 4) -> None:
    for _ in range(passes):
        world.reconcile(s)
        world.settle()
        world.list_endpoints()


def test_stable_keeps_its_sessions_while_no_canary_runs() -> None:
    world, old, _ = start()
    assert world.route_sessions == {"fraud-stable": name_of(old)}


def test_at_a_weight_step_both_revisions_keep_their_sessions_and_the_step_waits_to_see_them() -> None:
    world, old, new = start()
    walk(world, new)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight) == (1, 50)
    assert world.route_sessions == {"fraud-stable": name_of(old), "fraud-canary": name_of(new)}
    decision = world.decide(new)
    assert decision.route is not None and dict(decision.route.sessions) == world.route_sessions


def test_a_weight_step_holds_until_the_route_shows_the_session_rules() -> None:
    world, old, new = start()
    world.reconcile(new)
    world.settle()
    world.list_endpoints()
    world.route_stuck = True
    world.route = {"fraud-stable": 50, "fraud-canary": 50}  # the weights arrive, the session rules do not
    walk(world, new, 2)
    canary = world.status.canary
    assert canary is not None and canary.step == 0
    message = condition(world.status, "Progressing").message
    assert f"show the session rules asked for (fraud-session-stable -> {name_of(old)}" in message
    world.route_stuck = False
    walk(world, new, 2)
    canary = world.status.canary
    assert canary is not None and canary.step == 1


def test_an_abort_drops_the_canarys_session_rule_first_so_its_sessions_return_to_stable() -> None:
    world, old, new = start()
    walk(world, new)
    new, world.status = command("abort", new, world.status)
    decision = world.decide(new)
    assert decision.route is not None
    assert dict(decision.route.sessions) == {"fraud-stable": name_of(old)}
    # `<name>-canary` moves to stable's ready pods in the same pass: a request still carrying the
    # canary's cookie meanwhile is served by stable, never by the aborted canary.
    service = next(m for m in decision.apply if m["metadata"]["name"] == "fraud-canary")
    assert service["spec"]["selector"]["modelship.io/revision"] == name_of(old)
    world.apply(decision)
    assert world.route_sessions == {"fraud-stable": name_of(old)}


def test_at_promotion_the_promoted_revision_keeps_the_stable_sessions() -> None:
    world, _, new = start()
    walk(world, new)
    for _ in range(2):
        new, world.status = command("promote", new, world.status)
        walk(world, new)
    assert world.status.phase == "Healthy" and world.status.stable_revision == name_of(new)
    assert world.route_sessions == {"fraud-stable": name_of(new)}


def test_without_affinity_no_sessions_are_asked_for() -> None:
    s = canary_spec(router="gatewayAPI", strategy={"canary": {"steps": STEPS}})
    world = stable_world(s)
    decision = world.decide(s)
    assert decision.route is not None and dict(decision.route.sessions) == {}


def test_dropping_the_canarys_session_rule_is_written_before_services_and_pods_change() -> None:
    seen = engine.RouteObservation("fraud", {"fraud-stable": 50, "fraud-canary": 50}, sessions=BOTH)
    observations = engine.Observations(OWNER, route=seen)
    route = engine.Route({"fraud-stable": 50, "fraud-canary": 50}, sessions={"fraud-stable": "fraud-aaa"})
    service = {"kind": "Service", "metadata": {"name": "fraud-canary"}, "spec": {"selector": {"a": "b"}}}
    assert ordered([service], (), route, "fraud-canary", observations)[0] == route
    # Keeping it (or adding it, with the canary's weight) goes after them.
    kept = engine.Route({"fraud-stable": 50, "fraud-canary": 50}, sessions=BOTH)
    assert ordered([service], (), kept, "fraud-canary", observations)[-1] == kept


@pytest.mark.parametrize(
    ("affinity", "shown"),
    [({"cookie": {}}, "cookie modelship-revision"), ({"header": {"name": "x-rev"}}, "header x-rev")],
)
def test_the_plugins_status_view_says_how_sessions_stick(affinity: dict[str, Any], shown: str) -> None:
    md = {
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": api.dump(sticky_spec(affinity=affinity)),
        "status": {"phase": "Healthy", "stableRevision": "fraud-aaa"},
    }
    assert f"Sessions:   sticky by {shown} " in plugin.render(md, [])
    del md["spec"]["traffic"]["sessionAffinity"]
    assert "Sessions:" not in plugin.render(md, [])
