"""The istio router's pure rules: the VirtualService it creates, the HTTP routes it manages in a
user's, header routes, reading weights and headers back, istiod's Reconciled status; and the engine
driving it through the same steps as the gatewayAPI router."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from modelship import api
from modelship.core import gateway, istio, traffic
from modelship.core.shadow import PERCENT_HEADER, REVISION_HEADER, Shadow

from .enginesim import OWNER, command, spec
from .test_bluegreen import bg_spec
from .test_canary import NEW_IMAGE, canary_spec, condition, name_of, stable_world, step
from .test_header_routes import QA, STAFF

pytestmark = pytest.mark.unit

WEIGHTS = {"fraud-stable": 80, "fraud-canary": 20}


def user_vs() -> dict[str, Any]:
    """A user's VirtualService: a route for another service first, then the model's, with a retry
    policy and a header match of its own."""
    return {
        "metadata": {"name": "shop", "generation": 3},
        "spec": {
            "hosts": ["shop.example.com"],
            "gateways": ["istio-system/public"],
            "http": [
                {
                    "name": "other",
                    "match": [{"uri": {"prefix": "/other"}}],
                    "route": [{"destination": {"host": "other"}}],
                },
                {
                    "name": "primary",
                    "match": [{"uri": {"prefix": "/fraud"}, "headers": {"x-tenant": {"exact": "a"}}}],
                    "retries": {"attempts": 3},
                    "route": [{"destination": {"host": "fraud-stable.models.svc.cluster.local"}}],
                },
            ],
        },
    }


def ref(**fields: Any) -> api.VirtualServiceRef:
    return api.VirtualServiceRef.model_validate({"name": "shop", **fields})


def test_a_created_virtual_service_sends_each_named_route_to_both_services() -> None:
    vs = istio.virtual_service(
        OWNER, ref(routes=["primary"]), ["fraud.example.com"], ["istio-system/public"], WEIGHTS, [QA]
    )
    assert vs["apiVersion"] == "networking.istio.io/v1" and vs["kind"] == "VirtualService"
    assert vs["metadata"]["ownerReferences"][0]["uid"] == OWNER.uid
    assert vs["spec"]["hosts"] == ["fraud.example.com"] and vs["spec"]["gateways"] == ["istio-system/public"]
    header, weighted = vs["spec"]["http"]
    assert header["name"] == "fraud-header-qa" and header["match"] == [
        {"headers": {"x-canary": {"exact": "yes"}}}
    ]
    assert header["route"] == [
        {"destination": {"host": "fraud-canary", "port": {"number": 80}}, "weight": 100}
    ]
    assert weighted["name"] == "primary"
    assert [(d["destination"]["host"], d["weight"]) for d in weighted["route"]] == [
        ("fraud-stable", 80),
        ("fraud-canary", 20),
    ]
    assert istio.read_weights(vs, "fraud", ["primary"]) == WEIGHTS
    assert istio.read_headers(vs, "fraud", ["primary"]) == gateway.headers_of([QA])


def test_without_gateways_a_created_virtual_service_leaves_them_to_istio_and_its_route_is_the_models() -> (
    None
):
    vs = istio.virtual_service(OWNER, ref(), ["fraud"], [], WEIGHTS)
    assert "gateways" not in vs["spec"]
    assert [r["name"] for r in vs["spec"]["http"]] == ["fraud"]
    assert istio.read_weights(vs, "fraud", None) == WEIGHTS


def test_in_a_users_virtual_service_only_managed_destinations_change_and_header_routes_go_first() -> None:
    vs = user_vs()
    before = copy.deepcopy(vs)
    http = istio.with_headers(vs, "fraud", None, WEIGHTS, [QA])
    assert http is not None and vs == before  # pure: the object read is not changed
    other, header, primary = http
    assert other == before["spec"]["http"][0]
    assert primary["retries"] == {"attempts": 3} and primary["match"] == before["spec"]["http"][1]["match"]
    assert [(d["destination"]["host"], d["weight"]) for d in primary["route"]] == [
        ("fraud-stable", 80),
        ("fraud-canary", 20),
    ]
    # The header route repeats the managed route's match (its path and its own header) with QA's added.
    assert header["match"] == [
        {"uri": {"prefix": "/fraud"}, "headers": {"x-tenant": {"exact": "a"}, "x-canary": {"exact": "yes"}}}
    ]
    written = {**vs, "spec": {**vs["spec"], "http": http}}
    assert istio.read_weights(written, "fraud", None) == WEIGHTS
    assert istio.read_headers(written, "fraud", None) == gateway.headers_of([QA])  # not x-tenant
    # Written again without header routes: modelship's go, the user's stay.
    again = istio.with_headers(written, "fraud", None, {"fraud-stable": 100, "fraud-canary": 0}, [])
    assert again is not None and [r["name"] for r in again] == ["other", "primary"]


def test_header_names_are_lowercased_as_istio_requires_and_compared_alike() -> None:
    mixed = api.HeaderRoute.model_validate(
        {"name": "qa", "match": [{"headerName": "X-Canary", "headerValue": "Yes"}]}
    )
    (route,) = istio.header_routes("fraud", [mixed])
    assert route["match"] == [{"headers": {"x-canary": {"exact": "Yes"}}}]
    (regex,) = istio.header_routes("fraud", [STAFF])
    assert regex["match"][0]["headers"] == {"x-b": {"exact": "1"}, "x-user": {"regex": "^qa-.*"}}
    vs = {"spec": {"http": [route, regex, *user_vs()["spec"]["http"]]}}
    assert istio.read_headers(vs, "fraud", None) == gateway.headers_of([mixed, STAFF])


def test_named_routes_are_managed_each_and_a_missing_one_means_no_managed_route() -> None:
    vs = user_vs()
    vs["spec"]["http"].append({"name": "mirror-path", "route": [{"destination": {"host": "fraud-stable"}}]})
    http = istio.with_headers(vs, "fraud", ["primary", "mirror-path"], WEIGHTS, [])
    assert http is not None
    assert [istio._route_weights(r) for r in http[1:]] == [WEIGHTS, WEIGHTS]
    assert istio.with_headers(vs, "fraud", ["primary", "absent"], WEIGHTS, []) is None
    assert istio.read_weights(vs, "fraud", ["absent"]) is None


def test_routes_that_disagree_are_shown_by_name_and_never_read_as_a_steps_weights() -> None:
    vs = istio.virtual_service(OWNER, ref(routes=["a", "b"]), ["fraud"], [], WEIGHTS)
    vs["spec"]["http"][1]["route"][0]["weight"] = 100
    vs["spec"]["http"][1]["route"][1]["weight"] = 0
    read = istio.read_weights(vs, "fraud", ["a", "b"])
    assert read == {"a/fraud-stable": 80, "a/fraud-canary": 20, "b/fraud-stable": 100, "b/fraud-canary": 0}
    assert read not in ({"fraud-stable": 100 - w, "fraud-canary": w} for w in range(101))


def test_a_lone_destination_without_weight_takes_all_and_a_route_without_ours_is_not_managed() -> None:
    vs = user_vs()
    assert istio.read_weights(vs, "fraud", None) == {"fraud-stable": 100}
    vs["spec"]["http"].pop()
    assert istio.read_weights(vs, "fraud", None) is None
    assert istio.with_headers(vs, "fraud", None, WEIGHTS, [QA]) is None


def test_a_header_route_edited_to_send_elsewhere_is_not_read_as_ours() -> None:
    http = istio.with_headers(user_vs(), "fraud", None, WEIGHTS, [QA])
    assert http is not None
    http[1]["route"] = [{"destination": {"host": "fraud-stable"}, "weight": 100}]
    assert istio.read_headers({"spec": {"http": http}}, "fraud", None) == {}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (None, None),  # istiod distributes no status (its default): nothing to wait for
        ({"conditions": [{"type": "Reconciled", "status": "True", "observedGeneration": 3}]}, True),
        ({"observedGeneration": "3", "conditions": [{"type": "Reconciled", "status": "True"}]}, True),
        ({"conditions": [{"type": "Reconciled", "status": "True", "observedGeneration": "2"}]}, False),
        ({"conditions": [{"type": "Reconciled", "status": "False", "observedGeneration": 3}]}, False),
    ],
)
def test_reconciled_reads_istiods_status_for_the_current_generation(
    status: dict[str, Any] | None, expected: bool | None
) -> None:
    vs = user_vs() | ({"status": status} if status is not None else {})
    assert istio.reconciled(vs) is expected


def test_during_a_shadow_the_managed_routes_set_both_headers_and_otherwise_remove_them() -> None:
    vs = user_vs()
    vs["spec"]["http"][1]["headers"] = {
        "request": {"set": {"x-team": "risk", PERCENT_HEADER: "7"}, "remove": ["cookie"]},
        "response": {"add": {"x-served-by": "mesh"}},
    }
    shadow = Shadow(50, "fraud-abc1234")
    http = istio.with_headers(vs, "fraud", None, WEIGHTS, [QA], shadow)
    assert http is not None
    primary = http[2]
    assert primary["headers"] == {
        "request": {
            "set": {"x-team": "risk", PERCENT_HEADER: "50", REVISION_HEADER: "fraud-abc1234"},
            "remove": ["cookie"],
        },
        "response": {"add": {"x-served-by": "mesh"}},  # the user's own stay
    }
    # The header route is marked too; its pods, the candidate's, ignore a mark naming themselves.
    assert http[1]["headers"]["request"]["set"][REVISION_HEADER] == "fraud-abc1234"
    written = {"spec": {"http": http}}
    assert istio.read_shadow(written, "fraud", None) == shadow
    stopped = istio.with_headers(written, "fraud", None, WEIGHTS, [], None)
    assert stopped is not None
    assert stopped[1]["headers"]["request"] == {
        "set": {"x-team": "risk"},
        "remove": ["cookie", PERCENT_HEADER, REVISION_HEADER],  # a client cannot ask pods to copy
    }
    assert istio.read_shadow({"spec": {"http": stopped}}, "fraud", None) is None


def test_a_created_virtual_service_marks_each_weighted_route_for_the_shadow() -> None:
    shadow = Shadow(10, "fraud-abc1234")
    vs = istio.virtual_service(OWNER, ref(routes=["a", "b"]), ["fraud"], [], WEIGHTS, (), shadow)
    assert [r["headers"]["request"]["set"][PERCENT_HEADER] for r in vs["spec"]["http"]] == ["10", "10"]
    assert istio.read_shadow(vs, "fraud", ["a", "b"]) == shadow
    plain = istio.virtual_service(OWNER, ref(), ["fraud"], [], WEIGHTS)
    assert plain["spec"]["http"][0]["headers"] == {"request": {"remove": [PERCENT_HEADER, REVISION_HEADER]}}


@pytest.mark.parametrize("percent", ["0", "", "x"])
def test_a_percent_of_0_or_not_a_number_is_no_shadow(percent: str) -> None:
    vs = istio.virtual_service(OWNER, ref(), ["fraud"], [], WEIGHTS, (), Shadow(5, "fraud-abc1234"))
    vs["spec"]["http"][0]["headers"]["request"]["set"][PERCENT_HEADER] = percent
    assert istio.read_shadow(vs, "fraud", None) is None


# ---- the engine through the istio router -------------------------------------------------------


def istio_spec(image: str | None = None, **vs: Any) -> api.ModelDeploymentSpec:
    s: api.ModelDeploymentSpec = canary_spec(
        image, traffic={"router": "istio", "virtualService": {"name": "shop", **vs}}
    )
    return s


def test_route_of_names_the_object_each_router_writes_its_weights_into() -> None:
    assert traffic.route_of(istio_spec()) == ("VirtualService", "shop")
    assert traffic.route_of(canary_spec(router="gatewayAPI")) == ("HTTPRoute", "fraud")
    assert traffic.route_of(canary_spec()) is None


def test_weight_steps_wait_for_the_virtual_service_and_its_conditions_name_it() -> None:
    old = istio_spec()
    world = stable_world(old)
    world.list_endpoints()
    new = istio_spec(NEW_IMAGE)
    world.route_stuck = True
    for _ in range(4):
        world.reconcile(new)
        world.settle()
        world.list_endpoints()
    canary = world.status.canary
    assert canary is not None and canary.step == 0 and canary.weight == 20
    routed = condition(world.status, "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", "WeightMismatch")
    assert routed.message.startswith("VirtualService shop routes fraud-stable=100, fraud-canary=0")
    assert (
        "waiting for VirtualService shop to route fraud-stable=80"
        in condition(world.status, "Progressing").message
    )
    world.route_stuck = False
    world.reconcile(new)
    world.reconcile(new)
    assert world.route == {"fraud-stable": 80, "fraud-canary": 20}
    assert (
        condition(world.status, "TrafficRouted").message
        == "VirtualService shop: fraud-stable=80, fraud-canary=20"
    )


def test_a_missing_virtual_service_without_hosts_is_reported_naming_the_fields() -> None:
    world = stable_world(istio_spec())
    world.route = None
    decision = world.decide(istio_spec(NEW_IMAGE))
    routed = condition(decision.status, "TrafficRouted")
    assert (routed.reason, routed.message) == (istio.MISSING[1], istio.MISSING[2])
    assert "spec.traffic.virtualService.hosts" in routed.message
    with_hosts = istio_spec(NEW_IMAGE, hosts=["fraud"])
    routed = condition(world.decide(with_hosts).status, "TrafficRouted")
    assert (routed.reason, routed.message) == (
        "VirtualServiceMissing",
        "VirtualService shop does not exist yet; modelship creates it",
    )


def test_a_shadow_step_through_the_istio_router_completes_once_the_virtual_service_shows_the_mark() -> None:
    steps = [{"shadow": {"percent": 50}}, {"pause": {}}]
    old = canary_spec(
        None,
        traffic={"router": "istio", "virtualService": {"name": "shop"}},
        strategy={"canary": {"steps": steps}},
    )
    world = stable_world(old)
    world.list_endpoints()
    new = old.model_copy(update={"image": NEW_IMAGE})
    for _ in range(4):
        world.reconcile(new)
        world.settle()
        world.list_endpoints()
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.shadow_percent) == (1, 50)
    assert world.route_shadow == Shadow(50, canary.revision)


# ---- sticky sessions ---------------------------------------------------------------------------

COOKIE = api.SessionAffinity.model_validate({"cookie": {}})
HEADER = api.SessionAffinity.model_validate({"header": {"name": "X-Model-Revision"}})
PINNED = {"fraud-stable": "fraud-aaa1111", "fraud-canary": "fraud-bbb2222"}


@pytest.mark.parametrize("affinity", [COOKIE, HEADER], ids=["cookie", "header"])
def test_session_routes_follow_the_header_routes_and_read_back_as_written(
    affinity: api.SessionAffinity,
) -> None:
    http = istio.with_headers(user_vs(), "fraud", None, WEIGHTS, [QA], None, affinity, PINNED)
    assert http is not None
    assert [r["name"] for r in http] == [
        "other",
        "fraud-header-qa",
        "fraud-session-stable",
        "fraud-session-canary",
        "primary",
    ]
    stable_session = http[2]
    (dest,) = stable_session["route"]
    assert dest["destination"]["host"] == "fraud-stable" and dest["weight"] == 100
    # The session route takes only what the managed route would (its path and header), plus the session.
    assert stable_session["match"][0]["uri"] == {"prefix": "/fraud"}
    assert stable_session["match"][0]["headers"]["x-tenant"] == {"exact": "a"}
    # Each weighted destination stamps its answers, as its session route does.
    stamped = {d["destination"]["host"]: d["headers"] for d in http[4]["route"]}
    assert stamped["fraud-stable"] == dest["headers"]
    written = {"spec": {"http": http}}
    assert istio.read_sessions(written, "fraud", None, affinity) == PINNED
    assert istio.read_headers(written, "fraud", None) == gateway.headers_of(
        [QA]
    )  # sessions are not header routes
    # Without sessions asked for, modelship's session routes and stamps go; the user's routes stay.
    plain = istio.with_headers(written, "fraud", None, WEIGHTS, [], None, affinity, {})
    assert plain is not None and [r["name"] for r in plain] == ["other", "primary"]
    assert all("headers" not in d for d in plain[1]["route"])


def test_the_cookie_and_header_stamps_and_matches_are_istios_spelling_of_the_gateway_routers() -> None:
    assert istio.stamp(COOKIE, "fraud-aaa1111") == {
        "response": {"add": {"set-cookie": "modelship-revision=fraud-aaa1111; Path=/; HttpOnly"}}
    }
    assert istio.stamp(HEADER, "fraud-aaa1111") == {
        "response": {"set": {"x-model-revision": "fraud-aaa1111"}}
    }
    (route,) = istio.session_routes("fraud", COOKIE, {"fraud-canary": "fraud-bbb2222"})
    (pattern,) = route["match"][0]["headers"]["cookie"].values()
    assert pattern == gateway.session_match(COOKIE, "fraud-bbb2222")["value"]
    (route,) = istio.session_routes("fraud", HEADER, {"fraud-canary": "fraud-bbb2222"})
    assert route["match"] == [{"headers": {"x-model-revision": {"exact": "fraud-bbb2222"}}}]


def test_a_session_route_whose_stamp_disagrees_with_the_weighted_destinations_is_not_read_as_kept() -> None:
    vs = istio.virtual_service(OWNER, ref(), ["fraud"], [], WEIGHTS, (), None, COOKIE, PINNED)
    assert istio.read_sessions(vs, "fraud", None, COOKIE) == PINNED
    weighted = vs["spec"]["http"][-1]
    weighted["route"][1]["headers"] = istio.stamp(COOKIE, "fraud-ccc3333")  # someone re-stamped the canary
    assert istio.read_sessions(vs, "fraud", None, COOKIE) == {"fraud-stable": "fraud-aaa1111"}
    assert istio.read_sessions(vs, "fraud", None, None) == {}  # no affinity asked: none read


def test_sticky_sessions_through_the_istio_router_keep_both_revisions_once_the_canary_has_weight() -> None:
    old = canary_spec(
        None,
        traffic={"router": "istio", "virtualService": {"name": "shop"}, "sessionAffinity": {"cookie": {}}},
    )
    world = stable_world(old)
    world.list_endpoints()
    new = old.model_copy(update={"image": NEW_IMAGE})
    for _ in range(4):
        world.reconcile(new)
        world.settle()
        world.list_endpoints()
    canary = world.status.canary
    assert canary is not None and 0 < canary.weight < 100
    assert world.route_sessions == {
        "fraud-stable": world.status.stable_revision,
        "fraud-canary": canary.revision,
    }


def test_a_blue_green_swap_through_the_istio_router_waits_for_the_new_colours_service_to_list_its_pods() -> (
    None
):
    route = {"traffic": {"router": "istio", "virtualService": {"name": "shop"}}}
    old = spec(**{**api.dump(bg_spec()), **route})
    world = stable_world(old)
    new = spec(**{**api.dump(bg_spec(NEW_IMAGE)), **route})
    step(world, new)
    new, world.status = command("promote", new, world.status)
    world.reconcile(new)
    world.settle()
    world.list_endpoints()  # the slices list the preview's first pod, not the three just added
    world.slices = {**world.slices, "fraud-canary": frozenset(sorted(world.slices["fraud-canary"])[:1])}
    world.reconcile(new)
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    waiting = condition(world.status, "Progressing").message
    assert f"Service fraud-canary to list 4 ready pod(s) of {name_of(new)} (it lists 1)" in waiting, waiting
    assert world.status.stable_revision == name_of(old)
    world.list_endpoints()
    world.reconcile(new)
    assert world.status.stable_revision == name_of(new)  # the swap, behind the same VirtualService
    assert (
        condition(world.status, "TrafficRouted").message
        == "VirtualService shop: fraud-stable=100, fraud-canary=0"
    )


def test_modelships_header_and_session_routes_carry_the_shadow_mark_or_strip_a_clients() -> None:
    """A header or session route may reach a stable pod too: it sets or removes the mark like the
    weighted routes, so no route of modelship's lets a client's own copy of the headers through."""
    affinity = api.SessionAffinity.model_validate({"cookie": {}})
    pinned = {"fraud-stable": "fraud-1111111", "fraud-canary": "fraud-2222222"}
    for shadow in (Shadow(10, "fraud-2222222"), None):
        created = istio.virtual_service(OWNER, ref(), ["fraud"], [], WEIGHTS, [QA], shadow, affinity, pinned)
        edited = istio.with_headers(user_vs(), "fraud", None, WEIGHTS, [QA], shadow, affinity, pinned)
        assert edited is not None
        for http in (created["spec"]["http"], [r for r in edited if r.get("name") != "other"]):
            marks = [r["headers"]["request"] for r in http]
            assert len(marks) == 4  # header, two sessions, weighted
            if shadow is None:
                assert all(set(m["remove"]) >= {PERCENT_HEADER, REVISION_HEADER} for m in marks)
            else:
                assert all(m["set"][PERCENT_HEADER] == "10" for m in marks)
