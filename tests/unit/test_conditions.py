"""The conditions tools read: `Ready` (`kubectl wait --for=condition=Ready`), and kstatus' `Reconciling`
and `Stalled` (Flux, cli-utils), in every phase; an aborted rollout is Stalled, not broken."""

from __future__ import annotations

import dataclasses

import pytest

from modelship import api

from .enginesim import OWNER, World, command, spec
from .test_analysis_engine import BAD_ERRORS, with_analysis
from .test_canary import NEW_IMAGE, canary_spec, name_of, stable_world, step

pytestmark = pytest.mark.unit

TOOL_CONDITIONS = ("Ready", "Reconciling", "Stalled")


def seen(status: api.ModelDeploymentStatus) -> dict[str, tuple[str, str]]:
    """Ready, Reconciling, Stalled, Available: (status, reason) of each."""
    by_type = {c.type: c for c in status.conditions or []}
    return {t: (by_type[t].status, by_type[t].reason) for t in (*TOOL_CONDITIONS, "Available")}


def consistent(status: api.ModelDeploymentStatus, generation: int = OWNER.generation) -> None:
    """kstatus' rules: never Reconciling and Stalled at once; Ready True only when neither is."""
    view = seen(status)
    assert not (view["Reconciling"][0] == "True" and view["Stalled"][0] == "True"), view
    if view["Ready"][0] == "True":
        assert view["Reconciling"][0] == view["Stalled"][0] == "False", view
    for c in status.conditions or []:
        if c.type in TOOL_CONDITIONS:
            assert c.observed_generation == generation, c


def test_a_first_deploy_reconciles_until_its_pods_are_available_then_is_ready() -> None:
    s, world = canary_spec(), World()
    world.reconcile(s)
    assert seen(world.status)["Ready"] == ("False", "DeployingRevision")
    assert seen(world.status)["Reconciling"] == ("True", "DeployingRevision")
    assert seen(world.status)["Stalled"][0] == "False"
    consistent(world.status)
    world.settle()
    world.reconcile(s)
    assert world.status.phase == "Healthy"
    assert seen(world.status) == {
        "Ready": ("True", "RolloutComplete"),
        "Reconciling": ("False", "RolloutComplete"),
        "Stalled": ("False", "RolloutComplete"),
        "Available": ("True", "ReplicasAvailable"),
    }
    consistent(world.status)


def test_a_canary_in_flight_is_reconciling_and_not_ready_through_each_step_and_pause() -> None:
    world = stable_world(canary_spec())
    new = canary_spec(NEW_IMAGE)
    world.reconcile(new)
    assert seen(world.status)["Reconciling"] == ("True", "Canarying")
    assert seen(world.status)["Ready"] == ("False", "Canarying")
    consistent(world.status)
    step(world, new)  # weight 20, then the 2s pause
    reasons = set()
    for _ in range(6):  # through the 50% step to the pause that waits for `promote`
        world.tick(5)
        step(world, new)
        consistent(world.status)
        assert seen(world.status)["Ready"][0] == "False" and seen(world.status)["Reconciling"][0] == "True"
        reasons.add(seen(world.status)["Reconciling"][1])
    assert world.status.phase == "Paused" and world.status.canary is not None
    # Waiting for a person is still work in flight: it is not finished, nor stuck.
    assert seen(world.status)["Reconciling"] == ("True", "RolloutPaused")
    assert seen(world.status)["Stalled"][0] == "False"
    assert "RolloutPaused" in reasons

    new, world.status = command("promote", new, world.status)
    for _ in range(4):
        step(world, new)
    assert world.status.stable_revision == name_of(new) and world.status.phase == "Healthy"
    assert seen(world.status)["Ready"] == ("True", "RolloutComplete")
    consistent(world.status)


def test_an_aborted_rollout_is_stalled_with_the_refusal_while_stable_stays_available() -> None:
    world = stable_world(canary_spec())
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("abort", new, world.status)
    world.reconcile(new)
    # The decision written down in docs/gitops.md: refused, not broken.
    view = seen(world.status)
    assert (view["Ready"], view["Reconciling"], view["Stalled"]) == (
        ("False", "Aborted"),
        ("False", "Aborted"),
        ("True", "Aborted"),
    )
    assert view["Available"][0] == "True"  # stable serves all traffic
    ready = next(c for c in world.status.conditions or [] if c.type == "Ready")
    assert name_of(new) in ready.message and "retry" in ready.message
    consistent(world.status)
    world.tick(60)  # past abortScaleDownDelay: still stalled, until retry or a new spec
    world.reconcile(new)
    assert seen(world.status)["Stalled"] == ("True", "Aborted")

    new, world.status = command("retry", new, world.status)
    world.reconcile(new)
    assert seen(world.status)["Stalled"][0] == "False"
    assert seen(world.status)["Reconciling"] == ("True", "Canarying")
    consistent(world.status)


def test_a_rollout_rolled_back_by_analysis_names_the_failed_analysis() -> None:
    world = stable_world(with_analysis())
    new = with_analysis(NEW_IMAGE)
    step(world, new)
    world.metrics["errors"] = BAD_ERRORS
    for _ in range(4):
        world.tick(5)
        world.reconcile(new)
    assert world.status.aborted is not None
    assert seen(world.status)["Ready"] == ("False", "AnalysisFailed")
    assert seen(world.status)["Stalled"] == ("True", "AnalysisFailed")
    assert seen(world.status)["Available"][0] == "True"
    consistent(world.status)


def test_a_stable_revision_past_its_progress_deadline_is_stalled_and_unavailable() -> None:
    s, world = canary_spec(), World()
    world.reconcile(s)
    name = name_of(s)
    world.deployments[name] = dataclasses.replace(
        world.deployments[name], observed_generation=1, deadline_exceeded=True
    )
    world.reconcile(s)
    assert seen(world.status) == {
        "Ready": ("False", "ProgressDeadlineExceeded"),
        "Reconciling": ("False", "ProgressDeadlineExceeded"),
        "Stalled": ("True", "ProgressDeadlineExceeded"),
        "Available": ("False", "ReplicasUnavailable"),
    }
    consistent(world.status)


def test_a_spec_reverted_mid_rollout_reconciles_while_stable_scales_back_then_is_ready() -> None:
    old = canary_spec()
    world = stable_world(old)
    step(world, canary_spec(NEW_IMAGE))
    world.reconcile(old)
    assert world.status.phase == "RolledBack"
    assert seen(world.status)["Reconciling"] == ("True", "RollingBack")
    consistent(world.status)
    world.settle()
    world.reconcile(old)
    # The spec's revision is the stable one and serves: done, whatever came before.
    assert seen(world.status)["Ready"] == ("True", "RolledBack")
    assert seen(world.status)["Stalled"][0] == "False"
    consistent(world.status)


def test_stable_pods_lost_in_steady_state_reconcile_without_a_rollout() -> None:
    s = canary_spec()
    world = stable_world(s)
    name = name_of(s)
    world.deployments[name] = dataclasses.replace(world.deployments[name], available_replicas=2)
    world.reconcile(s)
    assert seen(world.status)["Ready"] == ("False", "ReplicasStarting")
    assert seen(world.status)["Reconciling"] == ("True", "ReplicasStarting")
    consistent(world.status)


def test_a_blue_green_preview_reconciles_until_promoted() -> None:
    strategy = {"blueGreen": {"autoPromote": False}}
    world = World()
    old = spec(strategy=strategy)
    for _ in range(2):
        step(world, old)
    assert seen(world.status)["Ready"][0] == "True"
    new = spec(strategy=strategy, image=NEW_IMAGE)
    step(world, new)
    assert world.status.blue_green is not None
    assert seen(world.status)["Ready"][0] == "False" and seen(world.status)["Reconciling"][0] == "True"
    consistent(world.status)
    new, world.status = command("promote", new, world.status)
    for _ in range(3):
        step(world, new)
    assert world.status.stable_revision == name_of(new)
    assert seen(world.status)["Ready"] == ("True", "RolloutComplete")


def test_a_route_nobody_will_create_stalls_a_steady_model() -> None:
    # gatewayAPI without parentRefs: modelship cannot create the HTTPRoute; only a change helps.
    s = spec(traffic={"router": "gatewayAPI", "httpRoute": "fraud"})
    world = World(route_stuck=True)  # nothing creates the route
    step(world, s)
    assert seen(world.status)["Stalled"] == ("True", "HTTPRouteMissing")
    assert seen(world.status)["Ready"] == ("False", "HTTPRouteMissing")
    consistent(world.status)
    world.route, world.route_stuck = {"fraud-stable": 100, "fraud-canary": 0}, False  # a person made it
    world.reconcile(s)
    assert seen(world.status)["Ready"] == ("True", "RolloutComplete")


def test_every_condition_carries_the_generation_it_was_computed_for() -> None:
    s = canary_spec()
    world = stable_world(s)
    world.owner = dataclasses.replace(OWNER, generation=7)
    world.reconcile(s)
    consistent(world.status, generation=7)
    assert all(c.observed_generation == 7 for c in world.status.conditions or [])


def test_the_existing_conditions_are_kept_beside_the_new_ones() -> None:
    world = stable_world(canary_spec())
    types = [c.type for c in world.status.conditions or []]
    assert {"Available", "Progressing", *TOOL_CONDITIONS} <= set(types)
    assert len(types) == len(set(types))
