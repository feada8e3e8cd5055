"""Property tests of engine.decide over random histories of spec edits and cluster events.

A history is a list of actions (reconcile, pods become available, someone deletes or
scales the Deployment, the user changes replicas or the image); after any history,
the persisted status must be one the engine can resume from without redoing anything.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship import api, revisions

from .enginesim import OWNER, World, spec

pytestmark = pytest.mark.unit

IMAGES = ["registry.example/fraud@sha256:" + c * 64 for c in "abc"]
Action = tuple[str, int]
actions = st.lists(
    st.tuples(
        st.sampled_from(
            ["reconcile", "settle", "delete", "drift", "stuck", "replicas", "image", "generation"]
        ),
        st.integers(min_value=0, max_value=5),
    ),
    max_size=25,
)


def play(history: list[Action]) -> tuple[World, api.ModelDeploymentSpec]:
    world, s = World(), spec()
    for action, n in history:
        if action == "reconcile":
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
        world.tick()
    return world, s


@settings(max_examples=300, deadline=None)
@given(actions)
def test_deciding_twice_on_the_same_inputs_changes_nothing(history: list[Action]) -> None:
    world, s = play(history)
    first = world.decide(s)
    world.status = first.status
    world.tick(60)
    second = world.decide(s)
    assert second.status == first.status
    assert second.apply == first.apply
    assert second.delete == first.delete
    assert second.events == ()


@settings(max_examples=300, deadline=None)
@given(actions)
def test_conditions_carry_the_observed_generation_and_a_past_transition_time(history: list[Action]) -> None:
    world, s = play(history)
    decision = world.decide(s)
    conditions = decision.status.conditions or []
    assert {c.type for c in conditions} >= {"Available", "Progressing"}
    assert len({c.type for c in conditions}) == len(conditions)
    for c in conditions:
        assert c.observed_generation == world.owner.generation
        assert c.last_transition_time <= world.now
    assert decision.status.observed_generation == world.owner.generation


@settings(max_examples=300, deadline=None)
@given(actions)
def test_a_restart_from_any_persisted_status_converges_to_healthy(history: list[Action]) -> None:
    world, s = play(history)
    # An operator restart keeps only the cluster and the persisted status.
    for _ in range(3):
        world.reconcile(s)
        world.settle()
    decision = world.reconcile(s)
    assert decision.status.phase == "Healthy"
    stable = decision.status.stable_revision
    assert stable is not None
    wanted = revisions.revision_name(OWNER.name, revisions.template_of(s))
    assert decision.status.pending_revision == (None if wanted == stable else wanted)
    assert set(world.deployments) == {stable}
    assert world.deployments[stable].spec_replicas == s.replicas


@settings(max_examples=300, deadline=None)
@given(actions, actions)
def test_once_stable_the_stable_revision_is_never_deleted_or_replaced(
    before: list[Action], after: list[Action]
) -> None:
    world, s = play([*before, ("reconcile", 0), ("settle", 0), ("reconcile", 0)])
    stable, template = world.status.stable_revision, world.status.stable_template
    assert stable is not None
    for action, n in after:
        if action == "image":
            s = s.model_copy(update={"image": IMAGES[n % len(IMAGES)]})
        elif action == "replicas":
            s = s.model_copy(update={"replicas": n})
        decision = world.decide(s)
        assert stable not in decision.delete
        assert [m["metadata"]["name"] for m in decision.apply if m["kind"] == "Deployment"] == [stable]
        assert decision.status.stable_revision == stable
        assert decision.status.stable_template == template
        world.apply(decision)
        world.now += timedelta(seconds=1)


@settings(max_examples=200, deadline=None)
@given(actions)
def test_events_are_emitted_only_when_the_status_changes(history: list[Action]) -> None:
    world, s = play(history)
    decision = world.decide(s)
    if decision.status == world.status:
        assert decision.events == ()
