"""engine.decide: scenarios for the first revision, scaling and drift.

Rollouts are in test_canary.py and test_bluegreen.py.
"""

from __future__ import annotations

import dataclasses

import pytest

from modelship import api
from modelship.core import revisions

from .enginesim import OWNER, T0, World, spec

pytestmark = pytest.mark.unit


def target(s: api.ModelDeploymentSpec) -> str:
    return revisions.revision_name(OWNER.name, revisions.template_of(s))


def condition(status: api.ModelDeploymentStatus, type_: str) -> api.Condition:
    return next(c for c in status.conditions or [] if c.type == type_)


def healthy_world(s: api.ModelDeploymentSpec) -> World:
    world = World()
    world.reconcile(s)
    world.settle()
    world.reconcile(s)
    return world


def test_new_model_deployment_is_pending_and_creates_its_revision_and_services() -> None:
    s = spec()
    decision = World().decide(s)
    assert decision.status.phase == "Pending"
    assert decision.status.stable_revision is None
    kinds = [(m["kind"], m["metadata"]["name"]) for m in decision.apply]
    assert kinds == [
        ("Deployment", target(s)),
        ("Service", "fraud"),
        ("Service", "fraud-stable"),
        ("Service", "fraud-canary"),
    ]
    assert decision.apply[0]["spec"]["replicas"] == 2
    assert condition(decision.status, "Available").status == "False"
    assert condition(decision.status, "Progressing").status == "True"
    assert [e.reason for e in decision.events] == ["Pending"]


def test_first_revision_goes_progressing_then_healthy_and_becomes_stable() -> None:
    s = spec()
    world = World()
    world.reconcile(s)
    assert world.decide(s).status.phase == "Progressing"
    world.reconcile(s)
    world.settle()
    decision = world.reconcile(s)
    assert decision.status.phase == "Healthy"
    assert decision.status.stable_revision == target(s)
    assert decision.status.stable_template == revisions.template_of(s)
    assert decision.status.available_replicas == 2
    # The scale subresource's selector: with a canary strategy, every pod of the model.
    assert decision.status.selector == "modelship.io/model=fraud"
    assert decision.status.replicas == 2
    assert [e.reason for e in decision.events] == ["StableRevision", "Healthy"]
    assert condition(decision.status, "Available").reason == "ReplicasAvailable"
    assert condition(decision.status, "Progressing").reason == "RolloutComplete"
    assert [e.reason for e in world.events] == ["Pending", "Progressing", "StableRevision", "Healthy"]


def test_changing_replicas_scales_the_stable_revision_in_place() -> None:
    world = healthy_world(spec())
    stable = world.status.stable_revision
    decision = world.decide(spec(replicas=5))
    assert decision.status.stable_revision == stable
    assert decision.apply[0]["metadata"]["name"] == stable
    assert decision.apply[0]["spec"]["replicas"] == 5
    assert decision.delete == ()
    # Pods coming up is progress, not an outage; the old replicas keep serving.
    assert decision.status.phase == "Progressing"
    assert condition(decision.status, "Progressing").reason == "ReplicasStarting"
    assert condition(decision.status, "Available").reason == "MinimumReplicasAvailable"


def test_deleted_stable_deployment_is_recreated_and_reported_degraded() -> None:
    s = spec()
    world = healthy_world(s)
    del world.deployments[target(s)]
    decision = world.reconcile(s)
    assert decision.apply[0]["metadata"]["name"] == target(s)
    assert decision.status.phase == "Degraded"
    assert condition(decision.status, "Available").reason == "DeploymentMissing"
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "Degraded")]
    world.settle()
    assert world.reconcile(s).status.phase == "Healthy"


def test_replicas_edited_behind_our_back_are_reverted() -> None:
    s = spec()
    world = healthy_world(s)
    name = target(s)
    world.deployments[name] = dataclasses.replace(world.deployments[name], spec_replicas=7, generation=9)
    decision = world.decide(s)
    deployment = next(m for m in decision.apply if m["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 2


def test_an_unproven_first_revision_is_replaced_when_the_spec_changes() -> None:
    first = spec()
    world = World()
    world.reconcile(first)
    second = spec(model={"name": "fraud", "version": "2", "sha256": "d" * 64})
    decision = world.decide(second)
    assert decision.apply[0]["metadata"]["name"] == target(second)
    assert decision.delete == (target(first),)
    assert decision.status.rollout is None  # the new revision is not held back as a rollout


def test_scaling_to_zero_is_healthy_with_no_pods() -> None:
    world = healthy_world(spec())
    world.reconcile(spec(replicas=0))
    world.settle()
    decision = world.reconcile(spec(replicas=0))
    assert decision.status.phase == "Healthy"
    assert decision.apply[0]["spec"]["replicas"] == 0


def test_lost_pods_are_progressing_and_reported_unavailable_until_replaced() -> None:
    s = spec(replicas=4)
    world = healthy_world(s)
    name = target(s)
    world.deployments[name] = dataclasses.replace(
        world.deployments[name], available_replicas=1, minimum_available=False
    )
    decision = world.decide(s)
    assert decision.status.phase == "Progressing"
    available = condition(decision.status, "Available")
    assert (available.status, available.reason) == ("False", "ReplicasUnavailable")
    assert available.message == f"revision {name}: 1/4 replicas available"


@pytest.mark.parametrize("stable", [True, False], ids=["stable", "first-revision"])
def test_a_revision_past_its_progress_deadline_is_degraded(stable: bool) -> None:
    s = spec(replicas=3)
    world = healthy_world(s) if stable else World()
    if not stable:
        world.reconcile(s)
    name = target(s)
    world.deployments[name] = dataclasses.replace(
        world.deployments[name], available_replicas=1, deadline_exceeded=True
    )
    decision = world.decide(s)
    assert decision.status.phase == "Degraded"
    progressing = condition(decision.status, "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    assert [(e.type, e.reason) for e in decision.events] == [("Warning", "Degraded")]


def test_the_revision_deployment_gets_the_progress_deadline() -> None:
    decision = World().decide(spec(progressDeadline="2m30s"))
    assert decision.apply[0]["spec"]["progressDeadlineSeconds"] == 150


def test_last_transition_time_moves_only_when_the_condition_status_flips() -> None:
    s = spec()
    world = World()
    world.reconcile(s)
    created = condition(world.status, "Available").last_transition_time
    world.reconcile(s)
    assert condition(world.status, "Available").last_transition_time == created
    world.settle()
    world.reconcile(s)
    assert condition(world.status, "Available").last_transition_time > created


def test_conditions_track_the_generation_the_decision_was_made_for() -> None:
    world = healthy_world(spec())
    world.owner = dataclasses.replace(world.owner, generation=7)
    decision = world.decide(spec(replicas=3))
    assert decision.status.observed_generation == 7
    assert {c.observed_generation for c in decision.status.conditions or []} == {7}


def test_conditions_of_later_features_are_kept() -> None:
    later = api.Condition(
        type="AnalysisFailed", status="True", reason="Later", last_transition_time=T0, observed_generation=1
    )
    world = World(status=api.ModelDeploymentStatus(conditions=[later]))
    decision = world.decide(spec())
    assert later in (decision.status.conditions or [])


def test_a_stable_pointer_without_its_template_is_treated_as_unset() -> None:
    s = spec()
    world = healthy_world(s)
    world.status = world.status.model_copy(update={"stable_template": None})
    decision = world.decide(s)
    # The spec's revision is (re)deployed as the first revision; the name is the same.
    assert decision.apply[0]["metadata"]["name"] == target(s)
    assert decision.status.stable_revision == target(s)


def test_decision_objects_are_owned_by_the_model_deployment() -> None:
    for manifest in World().decide(spec()).apply:
        (ref,) = manifest["metadata"]["ownerReferences"]
        assert (ref["kind"], ref["name"], ref["uid"], ref["controller"]) == (
            "ModelDeployment",
            OWNER.name,
            OWNER.uid,
            True,
        )
        assert manifest["metadata"]["namespace"] == OWNER.namespace
