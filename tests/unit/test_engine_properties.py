"""Property tests of engine.decide over random histories of spec edits, cluster events,
time and manual commands, with random canary step lists.

A history is a list of actions (reconcile, pods become available, someone deletes or
scales a Deployment, the user changes replicas or the image, time passes, a person
runs promote/abort/retry/pause/resume/undo); after any history, the persisted status
must be one the engine can resume from without redoing anything, and every decision
keeps the traffic invariants.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship import api
from modelship.core import control, engine, revisions

from .enginesim import OWNER, World, command, spec

pytestmark = pytest.mark.unit

IMAGES = ["registry.example/fraud@sha256:" + c * 64 for c in "abc"]
VERBS = ["promote", "promote-full", "abort", "retry", "pause", "resume", "undo"]
Action = tuple[str, int]
actions = st.lists(
    st.tuples(
        st.sampled_from(
            ["reconcile"] * 6
            + ["settle"] * 4
            + ["image"] * 3
            + ["delete", "drift", "stuck", "replicas", "generation", "wait", *VERBS]
        ),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=40,
)
steps = st.lists(
    st.one_of(
        st.builds(lambda w: {"setWeight": w}, st.integers(0, 100)),
        st.builds(lambda d: {"pause": {"duration": f"{d}s"}}, st.integers(0, 20)),
        st.just({"pause": {}}),
        st.builds(lambda r: {"setCanaryScale": {"replicas": r}}, st.integers(0, 5)),
        st.builds(lambda w: {"setCanaryScale": {"weight": w}}, st.integers(0, 100)),
        st.just({"setCanaryScale": {"matchTrafficWeight": True}}),
        st.just({"analysis": {}}),
    ),
    min_size=1,
    max_size=6,
).map(lambda step_list: {"canary": {"steps": step_list, "scaleDownDelay": "10s"}})
blue_green = st.builds(
    lambda auto, preview, delay: {
        "blueGreen": {
            "autoPromote": auto,
            "previewReplicas": preview,
            "autoPromotionDelay": f"{delay}s",
            "scaleDownDelay": "10s",
        }
    },
    st.booleans(),
    st.integers(1, 3),
    st.integers(0, 20),
)
steps = st.one_of(steps, blue_green)  # a strategy: canary steps or blue/green
routers = st.sampled_from([{"router": "service"}, {"router": "gatewayAPI", "httpRoute": "fraud"}])
ANALYSIS: dict[str, Any] = {"metrics": [{"name": "errors", "template": "error-rate", "max": 0.01}]}


def base_spec(strategy: dict[str, Any], route: dict[str, str]) -> api.ModelDeploymentSpec:
    return spec(strategy=strategy, traffic=route, analysis=ANALYSIS)


def play(
    history: list[Action], s: api.ModelDeploymentSpec, world: World | None = None
) -> tuple[World, api.ModelDeploymentSpec]:
    if world is None:
        # Most histories start from a stable revision, so that they exercise rollouts.
        world = World()
        history = [("reconcile", 0), ("settle", 0), ("reconcile", 0), *history]
    for action, n in history:
        if action == "reconcile":
            check(world.decide(s), s)
            world.reconcile(s)
        elif action == "settle":
            world.settle()
        elif action == "delete" and world.deployments:
            world.deployments.pop(sorted(world.deployments)[n % len(world.deployments)])
        elif action == "drift" and world.deployments:
            name = sorted(world.deployments)[n % len(world.deployments)]
            d = world.deployments[name]
            world.deployments[name] = dataclasses.replace(d, spec_replicas=n + 7, generation=d.generation + 1)
        elif action == "stuck" and world.deployments:
            name = sorted(world.deployments)[n % len(world.deployments)]
            world.deployments[name] = dataclasses.replace(world.deployments[name], deadline_exceeded=True)
        elif action == "replicas":
            s = s.model_copy(update={"replicas": n})
        elif action == "image":
            s = s.model_copy(update={"image": IMAGES[n % len(IMAGES)]})
        elif action == "generation":
            world.owner = dataclasses.replace(world.owner, generation=world.owner.generation + 1)
        elif action == "wait":
            world.tick(5 * n)
        elif action in VERBS:
            verb = action.removesuffix("-full")
            with contextlib.suppress(control.NotApplicable):
                s, world.status = command(verb, s, world.status, full=action.endswith("-full"))
        world.tick()
    return world, s


def rollout_weight(status: api.ModelDeploymentStatus) -> int:
    """The percent of traffic the rollout in progress gets: a canary's weight, 100 once a
    blue/green switched, else 0."""
    if status.canary is not None:
        return status.canary.weight
    if status.blue_green is not None:
        return 100 if status.blue_green.phase in ("Switched", "Accepted") else 0
    return 0


def check(decision: engine.Decision, s: api.ModelDeploymentSpec) -> None:
    """The invariants every single decision keeps."""
    status = decision.status
    weight = rollout_weight(status)
    assert 0 <= weight <= 100 and (100 - weight) + weight == 100
    if status.rolling is None:  # no rollout in progress: no step, no weight
        assert status.canary is None and status.blue_green is None
    replicas = {
        m["metadata"]["name"]: m["spec"]["replicas"] for m in decision.apply if m["kind"] == "Deployment"
    }
    stable = status.stable_revision
    if stable is not None:
        assert stable not in decision.delete
        # Stable carries 100 - weight percent of traffic: it keeps pods while it does.
        if weight < 100 and s.replicas > 0:
            assert replicas[stable] >= 1
    if status.rolling is not None and s.replicas > 0:
        assert replicas[status.rolling] >= 1


@settings(max_examples=300, deadline=None)
@given(steps, routers, actions)
def test_every_decision_keeps_weights_in_range_and_stable_pods_while_stable_serves(
    strategy: dict[str, Any], route: dict[str, str], history: list[Action]
) -> None:
    world, s = play(history, base_spec(strategy, route))
    check(world.decide(s), s)


@settings(max_examples=300, deadline=None)
@given(steps, routers, actions)
def test_deciding_twice_on_the_same_inputs_changes_nothing(
    strategy: dict[str, Any], route: dict[str, str], history: list[Action]
) -> None:
    world, s = play(history, base_spec(strategy, route))
    first = world.decide(s)
    world.status = first.status
    second = world.decide(s)
    assert second.status == first.status
    assert second.apply == first.apply
    assert second.delete == first.delete
    assert second.events == ()


@settings(max_examples=200, deadline=None)
@given(steps, routers, actions)
def test_conditions_carry_the_observed_generation_and_a_past_transition_time(
    strategy: dict[str, Any], route: dict[str, str], history: list[Action]
) -> None:
    world, s = play(history, base_spec(strategy, route))
    decision = world.decide(s)
    conditions = decision.status.conditions or []
    assert {c.type for c in conditions} >= {"Available", "Progressing"}
    assert len({c.type for c in conditions}) == len(conditions)
    for c in conditions:
        assert c.observed_generation == world.owner.generation
        assert c.last_transition_time <= world.now
    assert decision.status.observed_generation == world.owner.generation


def finish(world: World, s: api.ModelDeploymentSpec) -> api.ModelDeploymentSpec:
    """Let the rollout run to its end: pods come up, time passes, a person promotes every pause{}."""
    s = s.model_copy(update={"paused": False})  # nobody holds it: not Git,
    world.status = world.status.model_copy(update={"pause": None})  # nor `modelship pause`
    # An analysis step takes a start and `count` (3) measurements, one per 30s tick.
    for _ in range(5 * len(s.strategy.canary.steps if s.strategy.canary else []) + 10):
        world.reconcile(s)
        world.settle()
        paused = next((c for c in world.status.conditions or [] if c.type == "Paused"), None)
        if paused is not None and paused.status == "True" and world.status.rolling:
            s, world.status = command("promote", s, world.status)
        world.tick(30)
    world.reconcile(s)
    return s


@settings(max_examples=300, deadline=None)
@given(steps, routers, actions)
def test_a_restart_from_any_persisted_status_reaches_the_same_end(
    strategy: dict[str, Any], route: dict[str, str], history: list[Action]
) -> None:
    world, s = play(history, base_spec(strategy, route))
    # An operator restart keeps only the cluster and the persisted status.
    s = finish(world, s)
    status = world.status
    wanted = revisions.revision_name(OWNER.name, revisions.template_of(s))
    stable = status.stable_revision
    assert stable is not None
    if status.aborted is not None:
        assert (status.phase, status.aborted.revision, status.rolling) == ("Degraded", wanted, None)
        assert set(world.deployments) == {stable, wanted}
        assert world.deployments[wanted].spec_replicas == 0
    else:
        assert status.phase in ("Healthy", "RolledBack")
        assert stable == wanted
        assert status.rolling is None and status.scale_down_revision is None
        assert set(world.deployments) == {stable}
    assert world.deployments[stable].spec_replicas == s.replicas


@settings(max_examples=300, deadline=None)
@given(steps, routers, actions, actions)
def test_the_stable_revision_changes_only_by_promotion_and_is_never_deleted(
    strategy: dict[str, Any], route: dict[str, str], before: list[Action], after: list[Action]
) -> None:
    s = base_spec(strategy, route)
    world, s = play([*before, ("reconcile", 0), ("settle", 0), ("reconcile", 0)], s)
    for action in after:
        stable = world.status.stable_revision
        decision = world.decide(s)
        if stable is not None:
            assert stable not in decision.delete
            new = decision.status.stable_revision
            # A rollout may start and promote in one pass (its pods were all up already).
            wanted = revisions.revision_name(OWNER.name, revisions.template_of(s))
            assert new == stable or (new == wanted and any(e.reason == "Promoted" for e in decision.events))
        world, s = play([action], s, world)


@settings(max_examples=200, deadline=None)
@given(steps, routers, actions)
def test_events_are_emitted_only_when_the_status_changes(
    strategy: dict[str, Any], route: dict[str, str], history: list[Action]
) -> None:
    world, s = play(history, base_spec(strategy, route))
    decision = world.decide(s)
    if decision.status == world.status:
        assert decision.events == ()


def test_the_simulated_rollout_reaches_promotion() -> None:
    """Guards the properties above against vacuity: the simulated histories do roll out."""
    steps = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 60}]
    s = base_spec({"canary": {"steps": steps}}, {"router": "service"})
    world, s = play([("image", 2)], s)
    s = finish(world, s)
    assert any(e.reason == "Promoted" for e in world.events)
    assert world.status.stable_revision == revisions.revision_name(OWNER.name, revisions.template_of(s))
