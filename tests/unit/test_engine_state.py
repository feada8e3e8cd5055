"""The engine's state and its writes: one rollout shape per strategy, weight steps that complete
only once the router shows them, and writes ordered so that a crash between any two leaves users
on ready pods."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship import api
from modelship.core import control, engine
from modelship.core.manifests import REVISION_LABEL

from .enginesim import World, command, spec

pytestmark = pytest.mark.unit

IMAGES = ["registry.example/fraud@sha256:" + c * 64 for c in "abc"]
ROUTE = {"router": "gatewayAPI", "httpRoute": "fraud", "parentRefs": [{"name": "gw"}]}
CANARY = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}, {"pause": {}}]}}
BLUE_GREEN = {"blueGreen": {"autoPromote": False}}


def md(strategy: dict[str, Any], image: int = 0, **more: Any) -> api.ModelDeploymentSpec:
    return spec(strategy=strategy, traffic=ROUTE, image=IMAGES[image], **more)


def run(world: World, s: api.ModelDeploymentSpec, passes: int = 12) -> None:
    """Passes of a healthy cluster: the operator decides, the pods come up."""
    for _ in range(passes):
        world.reconcile(s)
        world.settle()


def stable(strategy: dict[str, Any]) -> tuple[World, api.ModelDeploymentSpec]:
    world, s = World(), md(strategy)
    run(world, s)
    assert world.status.phase == "Healthy" and world.route == {"fraud-stable": 100, "fraud-canary": 0}
    return world, s


def users_on_ready_pods(world: World) -> None:
    for backend, weight in (world.route or {}).items():
        if weight > 0:
            assert world.ready_endpoints(backend) > 0, (backend, weight, world.services, world.deployments)


# Each scenario brings a world to the pass whose writes are cut short, and says what "done" is.
Scenario = Callable[[], tuple[World, api.ModelDeploymentSpec, Callable[[World], bool]]]


def new_digest_mid_rollout() -> tuple[World, api.ModelDeploymentSpec, Callable[[World], bool]]:
    world, s = stable(CANARY)
    s = md(CANARY, image=1)
    run(world, s, 4)
    assert world.status.canary is not None and world.status.canary.weight == 20
    assert world.route == {"fraud-stable": 80, "fraud-canary": 20}
    s = md(CANARY, image=2)
    target = world.decide(s).status.rolling
    return world, s, lambda w: w.status.canary is not None and w.status.canary.revision == target


def abort() -> tuple[World, api.ModelDeploymentSpec, Callable[[World], bool]]:
    world, s = stable(CANARY)
    s = md(CANARY, image=1)
    run(world, s, 4)
    s, world.status = command("abort", s, world.status)
    return (
        world,
        s,
        lambda w: w.status.aborted is not None and w.route == {"fraud-stable": 100, "fraud-canary": 0},
    )


def promotion() -> tuple[World, api.ModelDeploymentSpec, Callable[[World], bool]]:
    world, s = stable(CANARY)
    s = md(CANARY, image=1)
    run(world, s, 4)
    s, world.status = command("promote", s, world.status, full=True)
    target = world.status.rolling
    return world, s, lambda w: w.status.stable_revision == target and w.status.rollout is None


def blue_green_switch() -> tuple[World, api.ModelDeploymentSpec, Callable[[World], bool]]:
    world, s = stable(BLUE_GREEN)
    s = md(BLUE_GREEN, image=1)
    run(world, s, 4)
    assert world.status.blue_green is not None and world.status.blue_green.phase == "Preview"
    s, world.status = command("promote", s, world.status)
    target = world.status.rolling
    return world, s, lambda w: w.status.stable_revision == target and w.status.rollout is None


def blue_green_switch_back() -> tuple[World, api.ModelDeploymentSpec, Callable[[World], bool]]:
    strategy = {"blueGreen": {"autoPromote": False, "postPromotionAnalysis": True}}
    analysis = {"metrics": [{"name": "errors", "template": "error-rate", "max": 0.01}]}
    world, s = World(), md(strategy, analysis=analysis)
    run(world, s)
    s = md(strategy, image=1, analysis=analysis)
    run(world, s, 4)
    s, world.status = command("promote", s, world.status)
    run(world, s, 3)
    assert world.status.blue_green is not None and world.status.blue_green.phase == "Switched"
    assert world.route == {"fraud-stable": 0, "fraud-canary": 100}
    s, world.status = command("abort", s, world.status)
    return (
        world,
        s,
        lambda w: w.status.aborted is not None and w.route == {"fraud-stable": 100, "fraud-canary": 0},
    )


SCENARIOS = [new_digest_mid_rollout, abort, promotion, blue_green_switch, blue_green_switch_back]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_a_crash_after_any_write_leaves_users_on_ready_pods_and_the_next_pass_completes_the_move(
    scenario: Scenario,
) -> None:
    world, s, done = scenario()
    decision = world.decide(s)
    assert decision.writes, "the scenario's pass must write something"
    for k in range(len(decision.writes) + 1):
        crashed = copy.deepcopy(world)
        crashed.apply(decision, crash_after=k)  # the operator stopped after write k
        users_on_ready_pods(crashed)
        for _ in range(12):  # the restarted operator's passes
            crashed.reconcile(s)
            users_on_ready_pods(crashed)
            crashed.settle()
            users_on_ready_pods(crashed)
        assert done(crashed), (k, crashed.status.rollout, crashed.route)


def routed_to(world: World, revision: str) -> int:
    """The route's weight that reaches `revision`'s pods, through each backend Service's selector."""
    return sum(
        weight
        for backend, weight in (world.route or {}).items()
        if world.services.get(backend, {}).get(REVISION_LABEL) == revision
    )


@pytest.mark.parametrize("scenario", [promotion, blue_green_switch], ids=lambda f: f.__name__)
def test_a_promotion_never_sends_traffic_back_to_the_old_revision_whichever_write_it_stops_after(
    scenario: Scenario,
) -> None:
    world, s, done = scenario()
    target = world.status.rolling
    assert target is not None
    for _ in range(12):  # the passes until promoted, each cut short after every one of its writes
        before = routed_to(world, target)
        decision = world.decide(s)
        for k in range(len(decision.writes) + 1):
            crashed = copy.deepcopy(world)
            crashed.apply(decision, crash_after=k)
            assert routed_to(crashed, target) >= before, (k, crashed.route, crashed.services)
        world.apply(decision)
        world.settle()
        world.tick()
        if done(world):
            break
    assert done(world) and routed_to(world, target) == 100


def test_the_new_digest_pass_takes_the_canarys_weight_away_before_repointing_its_service() -> None:
    world, s, _ = new_digest_mid_rollout()
    writes = world.decide(s).writes
    kinds = [
        "route" if isinstance(w, engine.Route) else w.manifest["metadata"]["name"]
        for w in writes
        if not isinstance(w, engine.Delete)
    ]
    assert kinds.index("route") < kinds.index("fraud-canary")
    assert writes[0] == engine.Route({"fraud-stable": 100, "fraud-canary": 0})


def test_a_weight_step_holds_until_the_route_shows_it_and_says_which_backend_has_which_weight() -> None:
    world, s = stable(CANARY)
    s = md(CANARY, image=1)
    world.route_stuck = True  # someone keeps the old weights on the route
    run(world, s, 6)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight) == (0, 20)
    routed = next(c for c in world.status.conditions or [] if c.type == "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", "WeightMismatch")
    assert (
        "routes fraud-stable=100, fraud-canary=0; modelship asked for fraud-stable=80, fraud-canary=20"
        in routed.message
    )
    progressing = next(c for c in world.status.conditions or [] if c.type == "Progressing")
    assert "waiting for HTTPRoute fraud" in progressing.message
    world.route_stuck = False
    run(world, s, 2)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight) == (1, 20)
    routed = next(c for c in world.status.conditions or [] if c.type == "TrafficRouted")
    assert (routed.status, routed.reason) == ("True", "WeightsSet")


def test_a_pause_starts_when_its_weight_is_verified_not_when_it_was_asked_for() -> None:
    strategy = {"canary": {"steps": [{"setWeight": 20}, {"pause": {"duration": "60s"}}]}}
    world, s = stable(strategy)
    s = md(strategy, image=1)
    world.route_stuck = True
    run(world, s, 3)
    canary = world.status.canary
    assert canary is not None and (canary.step, canary.weight, canary.pause_start_time) == (0, 20, None)
    asked_by = world.now  # the weight was asked for before now, and the route did not show it
    world.tick(30)
    world.route_stuck = False
    verified_at = world.now
    world.reconcile(s)  # writes the weight again and reads it back: verified, the pause begins
    canary = world.status.canary
    assert canary is not None and canary.step == 1
    # The next whole second after the verifying pass: the pass's time is cut to whole seconds,
    # and a pause that started at that cut could end up to a second short.
    assert (
        canary.pause_start_time == verified_at + timedelta(seconds=1) and canary.pause_start_time > asked_by
    )


def test_a_status_written_by_0_1_is_converted_on_first_read() -> None:
    s = md(CANARY, image=1)
    old = {
        "phase": "Paused",
        "stableRevision": "fraud-aaaa",
        "canaryRevision": "fraud-bbbb",
        "currentStep": 1,
        "canaryWeight": 20,
        "pauseStartTime": "2026-01-01T00:00:00Z",
    }
    status = api.read_status(old, s)
    assert status.canary == api.CanaryRollout(
        revision="fraud-bbbb", step=1, weight=20, pause_start_time=datetime(2026, 1, 1, tzinfo=UTC)
    )
    bg = api.read_status({**old, "currentStep": 2, "canaryWeight": 100}, md(BLUE_GREEN))
    assert bg.blue_green is not None and (bg.blue_green.revision, bg.blue_green.phase) == (
        "fraud-bbbb",
        "Switched",
    )
    aborted = api.read_status({**old, "abortedRevision": "fraud-bbbb", "abortReason": "AnalysisFailed"}, s)
    assert aborted.aborted is not None and (aborted.aborted.revision, aborted.aborted.reason) == (
        "fraud-bbbb",
        "AnalysisFailed",
    )
    assert api.read_status({"phase": "Healthy"}, s).rollout is None


# Random histories of passes, pods coming up, routes that lag or are edited, and manual commands.
history = st.lists(
    st.sampled_from(
        ["reconcile"] * 8
        + ["settle"] * 5
        + ["image"] * 2
        + ["stuck", "unstuck", "edit", "wait", *control.VERBS]
    ),
    min_size=5,
    max_size=50,
)
strategies = st.sampled_from(
    [
        CANARY,
        {"canary": {"steps": [{"setWeight": 10}, {"setWeight": 40}, {"setWeight": 100}]}},
        BLUE_GREEN,
        {"blueGreen": {"autoPromote": True, "postPromotionAnalysis": True}},
    ]
)
ANALYSIS = {"metrics": [{"name": "errors", "template": "error-rate", "max": 0.01}]}


@settings(max_examples=300, deadline=None)
@given(strategies, history, st.integers(0, 2))
def test_every_status_has_one_rollout_shape_and_no_weight_step_completes_unverified(
    strategy: dict[str, Any], actions: list[str], seed: int
) -> None:
    world, s = World(), md(strategy, analysis=ANALYSIS)
    run(world, s, 3)
    image = seed
    for action in actions:
        if action == "reconcile":
            before, seen = world.status, dict(world.route or {})
            decision = world.decide(s)
            one_shape(decision.status, s)
            weight_steps_verified(before, decision.status, seen, s)
            world.apply(decision)
        elif action == "settle":
            world.settle()
        elif action == "image":
            image = (image + 1) % len(IMAGES)
            s = md(strategy, image=image, analysis=ANALYSIS)
        elif action in ("stuck", "unstuck"):
            world.route_stuck = action == "stuck"
        elif action == "edit" and world.route:
            world.route = {"fraud-stable": 50, "fraud-canary": 50}
        elif action == "wait":
            world.tick(60)
        else:
            with contextlib.suppress(control.NotApplicable):
                s, world.status = command(action, s, world.status)
            one_shape(world.status, s)
        world.tick()


def one_shape(status: api.ModelDeploymentStatus, s: api.ModelDeploymentSpec) -> None:
    rollout = status.rollout
    if rollout is None:
        return
    shapes = [x for x in (rollout.canary, rollout.blue_green, rollout.aborted, rollout.rolled_back) if x]
    assert len(shapes) == 1
    if s.strategy.canary is not None:
        assert rollout.blue_green is None
        if rollout.canary is not None:
            assert 0 <= rollout.canary.step <= len(s.strategy.canary.steps)
            assert 0 <= rollout.canary.weight <= 100
    else:
        assert rollout.canary is None  # no canary step on a blue/green
    assert rollout.revision != status.stable_revision


def weight_steps_verified(
    before: api.ModelDeploymentStatus,
    after: api.ModelDeploymentStatus,
    seen: dict[str, int],
    s: api.ModelDeploymentSpec,
) -> None:
    """Every setWeight step this pass completed was shown by the route the pass read."""
    old, new = before.canary, after.canary
    if old is None or new is None or old.revision != new.revision or new.promote_full:
        return
    assert s.strategy.canary is not None
    steps = s.strategy.canary.steps
    for index in range(old.step, min(new.step, len(steps))):
        weight = steps[index].set_weight
        if weight is not None:
            assert seen == {"fraud-stable": 100 - weight, "fraud-canary": weight}, (index, seen)
