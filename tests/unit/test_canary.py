"""engine.decide: canary rollouts step by step, manual commands, aborts and rollbacks."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from modelship import api
from modelship.core import control, revisions, traffic
from modelship.core.engine import routing

from .enginesim import OWNER, World, command, spec

pytestmark = pytest.mark.unit

NEW_IMAGE = "registry.example/fraud@sha256:" + "c" * 64
THIRD_IMAGE = "registry.example/fraud@sha256:" + "d" * 64
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "2s"}},
    {"setWeight": 50},
    {"pause": {}},
]


def canary_spec(
    image: str | None = None, router: str = "service", **overrides: Any
) -> api.ModelDeploymentSpec:
    route = (
        {"router": "gatewayAPI", "httpRoute": "fraud"} if router == "gatewayAPI" else {"router": "service"}
    )
    fields: dict[str, Any] = {
        "replicas": 4,
        "strategy": {"canary": {"steps": STEPS, "scaleDownDelay": "30s"}},
        "traffic": route,
        **overrides,
    }
    if image:
        fields["image"] = image
    return spec(**fields)


def name_of(s: api.ModelDeploymentSpec) -> str:
    return revisions.revision_name(OWNER.name, revisions.template_of(s))


def condition(status: api.ModelDeploymentStatus, type_: str) -> api.Condition:
    return next(c for c in status.conditions or [] if c.type == type_)


def replicas(world: World) -> dict[str, int]:
    return {name: d.spec_replicas for name, d in world.deployments.items()}


def stable_world(s: api.ModelDeploymentSpec) -> World:
    world = World()
    world.reconcile(s)
    world.settle()
    world.reconcile(s)
    assert world.status.phase == "Healthy"
    return world


def step(world: World, s: api.ModelDeploymentSpec) -> None:
    """One pass, then the pods it asked for become available, then another pass."""
    world.reconcile(s)
    world.settle()
    world.reconcile(s)


@pytest.mark.parametrize(
    ("replicas_", "weight", "expected"),
    [
        (4, 0, (4, 0)),
        (4, 20, (3, 1)),
        (4, 50, (2, 2)),
        (4, 100, (0, 4)),
        (1, 1, (1, 1)),  # at least one pod on each side when 0 < weight < 100
        (1, 99, (1, 1)),
        (10, 25, (8, 2)),  # 20% and 30% are as close: the smaller canary
        (10, 95, (1, 9)),
        (0, 50, (0, 0)),
    ],
)
def test_service_router_split_is_closest_with_a_pod_on_each_side(
    replicas_: int, weight: int, expected: tuple[int, int]
) -> None:
    assert traffic.split(replicas_, weight) == expected


def test_canary_walks_its_steps_with_replica_ratios_and_promotes_without_touching_stable_pods() -> None:
    old = canary_spec()
    world = stable_world(old)
    stable = name_of(old)
    new = canary_spec(NEW_IMAGE)
    canary = name_of(new)

    world.reconcile(new)
    assert world.status.canary is not None and world.status.canary.revision == canary
    assert (world.status.canary.step, world.status.canary.weight) == (0, 0)
    assert world.status.phase == "Progressing"
    # The canary comes up first (one pod for 20% of 4), stable keeps all 4 until the weight moves.
    assert replicas(world) == {stable: 4, canary: 1}
    world.settle()
    world.reconcile(new)
    assert (world.status.canary.step, world.status.canary.weight) == (1, 20)
    assert world.status.phase == "Paused"
    paused_at = world.status.canary.pause_start_time
    assert paused_at is not None
    assert replicas(world) == {stable: 3, canary: 1}

    world.now = paused_at + api.parse_duration("1s")
    world.reconcile(new)
    assert world.status.canary.step == 1
    world.now = paused_at + api.parse_duration("2s")
    world.reconcile(new)
    assert (world.status.canary.step, world.status.canary.weight) == (2, 20)
    assert replicas(world) == {stable: 3, canary: 2}
    world.settle()
    world.reconcile(new)
    assert (world.status.canary.step, world.status.canary.weight) == (3, 50)
    assert replicas(world) == {stable: 2, canary: 2}
    assert world.status.phase == "Paused"
    assert condition(world.status, "Paused").reason == "CanaryPauseStep"
    world.settle()
    for _ in range(3):  # pause{} holds until promoted
        world.reconcile(new)
    assert world.status.canary.step == 3

    new, world.status = command("promote", new, world.status)
    world.reconcile(new)
    assert replicas(world) == {stable: 2, canary: 4}  # the whole canary comes up before it takes over
    assert world.status.stable_revision == stable
    world.settle()
    decision = world.reconcile(new)
    status = decision.status
    assert (status.stable_revision, status.rollout) == (canary, None)
    assert status.stable_template == revisions.template_of(new)
    assert status.phase == "Healthy"
    assert status.scale_down_revision == stable
    assert {e.reason for e in decision.events} >= {"Promoted", "StableRevision", "Healthy"}
    # The old revision stays for scaleDownDelay; the new stable Deployment is the canary's (no restart).
    assert replicas(world) == {stable: 2, canary: 4}
    assert "fraud-canary" in {m["metadata"]["name"] for m in decision.apply}
    world.now = status.scale_down_at
    decision = world.reconcile(new)
    assert replicas(world) == {canary: 4}
    assert decision.status.scale_down_revision is None
    assert [e.reason for e in decision.events] == ["ScaledDown"]

    reasons = [e.reason for e in world.events]
    assert reasons.index("RolloutStarted") < reasons.index("WeightChanged") < reasons.index("PauseStarted")
    assert reasons.count("WeightChanged") == 2 and reasons.count("PauseStarted") == 2


def test_service_router_selects_both_revisions_only_while_a_canary_runs() -> None:
    old = canary_spec()
    world = stable_world(old)
    selector = {
        m["metadata"]["name"]: m["spec"]["selector"]
        for m in world.decide(old).apply
        if m["kind"] == "Service"
    }
    assert selector["fraud"] == {"modelship.io/model": "fraud", "modelship.io/revision": name_of(old)}
    assert selector["fraud-canary"] == selector["fraud-stable"] == selector["fraud"]
    new = canary_spec(NEW_IMAGE)
    world.reconcile(new)
    services = world.decide(new).apply
    selector = {m["metadata"]["name"]: m["spec"]["selector"] for m in services if m["kind"] == "Service"}
    assert selector["fraud"]["modelship.io/revision"] == name_of(old)  # weight 0: the canary gets nothing
    world.settle()
    world.reconcile(new)
    assert world.status.canary is not None and world.status.canary.weight == 20
    services = world.decide(new).apply
    selector = {m["metadata"]["name"]: m["spec"]["selector"] for m in services if m["kind"] == "Service"}
    assert selector["fraud"] == {"modelship.io/model": "fraud"}
    assert selector["fraud-canary"]["modelship.io/revision"] == name_of(new)
    assert selector["fraud-stable"]["modelship.io/revision"] == name_of(old)


def test_gateway_router_keeps_stable_whole_and_sizes_the_canary_by_weight_or_set_canary_scale() -> None:
    steps = [{"setCanaryScale": {"replicas": 3}}, {"setWeight": 10}, {"pause": {}}, {"setWeight": 50}]
    old = canary_spec(router="gatewayAPI", strategy={"canary": {"steps": steps}})
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE, router="gatewayAPI", strategy={"canary": {"steps": steps}})
    step(world, new)
    step(world, new)
    assert (world.status.canary.step, world.status.canary.weight) == (2, 10)
    assert replicas(world) == {name_of(old): 4, name_of(new): 3}
    # The `<name>` Service keeps selecting stable: the HTTPRoute splits the traffic.
    svc = next(m for m in world.decide(new).apply if m["metadata"]["name"] == "fraud")
    assert svc["spec"]["selector"]["modelship.io/revision"] == name_of(old)


def test_a_step_sizes_the_canary_for_the_weight_it_moves_to_before_moving_it() -> None:
    # setCanaryScale asks for fewer pods than 51% of 2 replicas needs: the canary is sized for the
    # weight the step moves to while it still carries none, not only once it carries it.
    scale = api.CanaryScale(replicas=0)
    sized = traffic.Router("gatewayAPI").replicas(2, 0, 51, scale, False)
    assert sized.canary == traffic.canary_pods_for(2, 51) == 2
    assert traffic.Router("gatewayAPI").replicas(2, 51, 51, scale, False) == sized  # the pass after


def test_gateway_router_moves_weight_only_once_the_canary_service_lists_its_ready_pods() -> None:
    old = canary_spec(router="gatewayAPI")
    world = stable_world(old)
    world.list_endpoints()
    new = canary_spec(NEW_IMAGE, router="gatewayAPI")
    step(world, new)  # the canary's pod is available, but its Service's slices do not list it yet
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    assert world.status.canary is not None and world.status.canary.weight == 0
    waiting = condition(world.status, "Progressing").message
    assert f"Service fraud-canary to list 1 ready pod(s) of {name_of(new)} (it lists 0)" in waiting, waiting
    world.list_endpoints()
    world.reconcile(new)
    assert world.route == {"fraud-stable": 80, "fraud-canary": 20}
    assert world.status.canary is not None and world.status.canary.weight == 20


def test_a_first_deploy_behind_a_route_is_healthy_only_once_its_service_lists_a_ready_pod() -> None:
    # The slices list a pod a moment after its Deployment counts it available; until then a
    # gateway answers 503 on the route, so the revision does not serve yet.
    s = canary_spec(router="gatewayAPI")
    world = World(route={"fraud-stable": 100, "fraud-canary": 0}, slices={})
    world.reconcile(s)
    world.settle()
    world.reconcile(s)
    assert world.status.phase == "Progressing" and world.status.stable_revision is None
    routed = condition(world.status, "TrafficRouted")
    assert (routed.status, routed.reason) == ("False", routing.ENDPOINTS_PENDING)
    assert f"Service fraud-stable to list 1 ready pod(s) of {name_of(s)} (it lists 0)" in routed.message
    assert condition(world.status, "Ready").status == "False"
    assert condition(world.status, "Progressing").reason == "DeployingRevision"
    world.list_endpoints()
    world.reconcile(s)
    assert world.status.phase == "Healthy" and world.status.stable_revision == name_of(s)
    assert condition(world.status, "TrafficRouted").status == "True"
    assert condition(world.status, "Ready").status == "True"


def test_a_first_deploy_is_healthy_on_its_pods_alone_when_the_slices_cannot_be_read() -> None:
    s = canary_spec(router="gatewayAPI")
    world = World(route={"fraud-stable": 100, "fraud-canary": 0}, slices=None)
    world.reconcile(s)
    world.settle()
    world.reconcile(s)
    assert world.status.phase == "Healthy" and world.status.stable_revision == name_of(s)


def test_a_new_digest_mid_rollout_replaces_the_canary_and_restarts_from_step_zero() -> None:
    old = canary_spec()
    world = stable_world(old)
    first = canary_spec(NEW_IMAGE)
    step(world, first)
    assert world.status.canary is not None and world.status.canary.weight == 20
    second = canary_spec(THIRD_IMAGE)
    decision = world.reconcile(second)
    assert decision.delete == (name_of(first),)
    assert decision.status.canary is not None
    assert (decision.status.canary.revision, decision.status.canary.step, decision.status.canary.weight) == (
        name_of(second),
        0,
        0,
    )
    assert replicas(world) == {name_of(old): 4, name_of(second): 1}  # traffic back to stable first
    assert [e.reason for e in decision.events][:2] == ["CanaryReplaced", "RolloutStarted"]


def test_a_canary_replaced_mid_rollout_keeps_its_service_and_pods_until_a_gateway_applied_its_0() -> None:
    """Re-pointing `<name>-canary` while a gateway still sends it the old canary's share would send
    those requests to pods that are not ready yet (503s): the route goes to 0 first, and the
    Service moves (and the old canary goes) only once the gateway accepted that 0."""
    old = canary_spec(router="gatewayAPI")
    world = stable_world(old)
    first = canary_spec(NEW_IMAGE, router="gatewayAPI")
    world.list_endpoints()
    for _ in range(3):
        step(world, first)
        world.list_endpoints()
    assert world.route == {"fraud-stable": 80, "fraud-canary": 20}
    world.gateway_accepted = True
    second = canary_spec(THIRD_IMAGE, router="gatewayAPI")

    def canary_service(decision: Any) -> str:
        svc = next(m for m in decision.apply if m["metadata"]["name"] == "fraud-canary")
        return str(svc["spec"]["selector"]["modelship.io/revision"])

    decision = world.decide(second)  # reads 20% on the old canary: the route goes to 0 first
    assert decision.route is not None and decision.route.weights["fraud-canary"] == 0
    assert canary_service(decision) == name_of(first) and decision.delete == ()
    assert decision.wake_at is not None and decision.wake_at <= world.now + routing.GATEWAY_RECHECK
    world.apply(decision)
    world.gateway_accepted = False  # the gateway has the 0 written but not applied yet
    decision = world.decide(second)
    assert canary_service(decision) == name_of(first) and decision.delete == ()
    world.apply(decision)
    world.gateway_accepted = True
    decision = world.decide(second)
    assert canary_service(decision) == name_of(second) and decision.delete == (name_of(first),)
    world.apply(decision)
    assert world.status.canary is not None and world.status.canary.revision == name_of(second)


def test_reverting_the_image_mid_rollout_is_an_immediate_rollback() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    decision = world.reconcile(old)
    assert decision.delete == (name_of(new),)
    assert decision.status.phase == "RolledBack"  # at once, while stable scales back to 4
    assert condition(decision.status, "Progressing").reason == "RollingBack"
    world.settle()
    decision = world.reconcile(old)
    assert decision.status.phase == "RolledBack"
    assert decision.status.rolling is None and decision.status.rolled_back is not None
    assert condition(decision.status, "Progressing").reason == "RolledBack"
    assert replicas(world) == {name_of(old): 4}
    assert "RolledBack" in [e.reason for e in world.events]
    # It stays RolledBack (no flapping), and the next rollout starts normally.
    assert world.reconcile(old).events == ()
    assert world.decide(new).status.phase == "Progressing"


def test_abort_sends_traffic_to_stable_until_retried() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("abort", new, world.status)
    decision = world.reconcile(new)
    assert decision.status.phase == "Degraded"
    assert decision.status.aborted is not None and decision.status.aborted.revision == name_of(new)
    assert decision.status.canary is None
    assert condition(decision.status, "Progressing").reason == "Aborted"
    # No traffic at once; the canary's pods stay for abortScaleDownDelay (30s), to be inspected.
    kept = replicas(world)[name_of(new)]
    assert kept > 0 and replicas(world)[name_of(old)] == 4
    assert decision.wake_at == decision.status.aborted.scale_down_at
    world.tick(30)
    assert world.reconcile(new).status.phase == "Degraded"  # stays aborted
    assert replicas(world) == {name_of(old): 4, name_of(new): 0}

    new, world.status = command("retry", new, world.status)
    decision = world.reconcile(new)
    assert decision.status.canary is not None
    assert (decision.status.canary.revision, decision.status.canary.step) == (name_of(new), 0)
    assert decision.status.phase == "Progressing"


def test_a_spec_change_after_an_abort_starts_a_new_rollout() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("abort", new, world.status)
    world.reconcile(new)
    decision = world.reconcile(canary_spec(THIRD_IMAGE))
    assert decision.status.rolling == name_of(canary_spec(THIRD_IMAGE))
    assert decision.status.aborted is None


def test_a_canary_past_its_progress_deadline_is_aborted() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    world.reconcile(new)
    canary = name_of(new)
    world.deployments[canary] = dataclasses.replace(
        world.deployments[canary], observed_generation=1, deadline_exceeded=True
    )
    decision = world.reconcile(new)
    assert decision.status.phase == "Degraded"
    assert decision.status.aborted is not None and decision.status.aborted.revision == canary
    progressing = condition(decision.status, "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ProgressDeadlineExceeded")
    assert (decision.events[0].type, decision.events[0].reason) == ("Warning", "ProgressDeadlineExceeded")
    assert replicas(world) == {name_of(old): 4, canary: 0}
    # The reason survives later passes (the Deployment's own condition clears once scaled to 0).
    world.settle()
    assert condition(world.reconcile(new).status, "Progressing").reason == "ProgressDeadlineExceeded"


def test_pause_holds_every_step_and_resume_continues() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    world.reconcile(new)
    new, world.status = command("pause", new, world.status)
    world.settle()
    decision = world.reconcile(new)
    assert decision.status.phase == "Paused"
    assert condition(decision.status, "Paused").reason == "PausedByUser"
    assert decision.status.canary is not None
    assert (decision.status.canary.step, decision.status.canary.weight) == (0, 0)
    new, world.status = command("resume", new, world.status)
    decision = world.reconcile(new)
    assert decision.status.canary is not None
    assert (decision.status.canary.step, decision.status.canary.weight) == (1, 20)


def test_promote_full_skips_the_remaining_steps() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("promote", new, world.status, full=True)
    step(world, new)
    assert world.status.stable_revision == name_of(new)
    assert world.status.rollout is None  # no promoteFull left behind, no canary


def test_verbs_that_need_a_rollout_refuse_without_one() -> None:
    world = stable_world(canary_spec())
    for verb in ("promote", "abort"):
        with pytest.raises(control.NotApplicable, match="no rollout in progress"):
            control.patch_for(verb, canary_spec(), world.status)
    with pytest.raises(control.NotApplicable, match="nothing to retry"):
        control.patch_for("retry", canary_spec(), world.status)


def test_undo_apply_mid_rollout_puts_the_stable_template_back_into_the_spec() -> None:
    old = canary_spec(env=[{"name": "A", "value": "1"}])
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    patch = control.patch_for("undo", new, world.status, apply=True)
    assert patch.target == "spec"
    assert patch.body["image"] == old.image and patch.body["env"] == [{"name": "A", "value": "1"}]
    assert patch.body["accelerator"] is None  # removed if the new spec had added one
    undone, _ = command("undo", new, world.status, apply=True)
    assert name_of(undone) == name_of(old)
    world.reconcile(undone)
    world.settle()
    assert world.reconcile(undone).status.phase == "RolledBack"


def test_restart_mid_rollout_repeats_no_step() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    assert world.status.canary is not None and world.status.canary.pause_start_time is not None
    # A fresh operator sees only the cluster and the status as the API server stored it (JSON),
    # at the moment of the last pass.
    persisted = api.ModelDeploymentStatus.model_validate(api.dump(world.status))
    restarted = World(deployments=dict(world.deployments), status=persisted, now=world.now)
    restarted.now -= api.parse_duration("5s")
    decision = restarted.decide(new)
    assert decision.status == world.status
    assert decision.events == ()


def test_the_decision_asks_to_be_woken_when_a_timed_pause_or_the_scale_down_delay_ends() -> None:
    old = canary_spec()
    world = stable_world(old)
    assert world.decide(old).wake_at is None
    new = canary_spec(NEW_IMAGE)
    world.reconcile(new)
    world.settle()
    decision = world.reconcile(new)
    paused_at = decision.status.canary.pause_start_time if decision.status.canary else None
    assert paused_at is not None
    assert decision.wake_at == paused_at + api.parse_duration("2s")
    new, world.status = command("promote", new, world.status, full=True)
    step(world, new)
    assert world.status.scale_down_at is not None
    assert world.decide(new).wake_at == world.status.scale_down_at


def test_aborts_deadlines_and_reverts_count_as_rollbacks_in_the_operator_metrics() -> None:
    # The decision says why its pass rolled a rollout back; the operator's metrics count that.
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    before = world.status
    assert world.decide(old).rolled_back == "RolledBack"
    _, aborted = command("abort", new, before)
    assert World(dict(world.deployments), aborted).decide(new).rolled_back == "Aborted"
    # Promotion is not a rollback.
    new, world.status = command("promote", new, world.status, full=True)
    world.reconcile(new)
    world.settle()
    assert world.decide(new).rolled_back is None


def test_a_revision_a_weighted_backend_still_lists_is_not_deleted_until_the_slices_move_on() -> None:
    """After a promotion the old stable goes at its scaleDownDelay, but while `<name>-stable`
    (weight 100) still lists only its pods (the EndpointSlice controller lagging behind the
    selector), deleting it would leave the gateway no pod for all the traffic: 503s."""
    old = canary_spec(router="gatewayAPI")
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE, router="gatewayAPI")
    world.list_endpoints()
    for _ in range(3):
        step(world, new)
        world.list_endpoints()
    world.gateway_accepted = True
    s, status = command("promote", new, world.status, full=True)
    world.status = status
    for _ in range(4):
        step(world, s)
    assert world.status.stable_revision == name_of(new) and world.status.canary is None
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    # The slices still list the old stable's pods behind `fraud-stable`: the controller lags.
    world.slices = {"fraud-stable": frozenset({f"{name_of(old)}-5d8f7c-0"}), "fraud-canary": frozenset()}
    world.tick(60)  # well past scaleDownDelay
    decision = world.decide(s)
    assert name_of(old) not in decision.delete
    assert decision.wake_at is not None and decision.wake_at <= world.now + routing.GATEWAY_RECHECK
    world.apply(decision)
    world.list_endpoints()  # the controller catches up: the new revision's pods only
    decision = world.decide(s)
    assert name_of(old) in decision.delete
    assert routing.still_served(world.observations(s)) == frozenset({name_of(new)})
