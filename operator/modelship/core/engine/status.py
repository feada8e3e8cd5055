"""A plan rendered into a Decision: the status (phase, pointers, conditions), the manifests to
apply, the Deployments to delete, the events, and when to decide again.
"""

from __future__ import annotations

from datetime import datetime

from modelship import api
from modelship.core import gateway, manifests, traffic
from modelship.core.analysis import runs
from modelship.core.engine import routing
from modelship.core.engine.accelerator import device_conditions, device_events, placement
from modelship.core.engine.model import (
    SWITCHED,
    ConditionValue,
    Decision,
    Event,
    Health,
    Observations,
    ObservedDeployment,
    Plan,
    Route,
    has,
    health_of,
)
from modelship.core.engine.writes import ordered


def finish(
    plan: Plan,
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> Decision:
    owner = observations.owner
    observed = observations.deployments.get(plan.stable)
    health = health_of(observed, plan.stable_replicas)
    rolled_back: str | None = None  # this pass rolled a rollout back: why
    if plan.mode == "aborted" and (status.aborted is None or status.aborted.reason is None):
        rolled_back = plan.abort_reason
    elif plan.rolled_back and status.rolling is not None:
        rolled_back = "RolledBack"
    # A rollback is remembered by the phase until the next rollout or promotion.
    plan.rolled_back = plan.rolled_back or (
        plan.mode == "steady" and not plan.promoted and status.phase == "RolledBack"
    )
    stable: str | None = plan.stable
    stable_template: api.RevisionTemplate | None = plan.stable_template
    phase: api.Phase
    if plan.mode == "first":
        phase = _PHASES[health] if observed is not None else "Pending"
        if phase != "Healthy":
            stable = stable_template = None
    elif health in ("Missing", "Stuck") or plan.mode == "aborted":
        phase = "Degraded"
    elif plan.mode == "rolling":
        phase = "Paused" if plan.paused else "Progressing"
    elif plan.rolled_back:
        phase = "RolledBack"  # at once: the canary is gone, even while stable scales back up
    elif health != "Ready":
        phase = "Progressing"
    else:
        phase = "Healthy"

    available = observed.available_replicas if observed else 0
    counts = f"revision {plan.stable}: {available}/{plan.stable_replicas} replicas available"
    progressing = _progressing(plan, spec, health, counts, stable is not None)
    paused = ("True", plan.paused[0], plan.paused[1]) if plan.paused else ("False", "NotPaused", "not paused")
    wanted = [(plan.stable, plan.stable_template, plan.stable_replicas)]
    if plan.mode == "rolling" and plan.canary:
        wanted.append((plan.canary, template, plan.canary_replicas))
    elif plan.mode == "aborted":
        # Kept (at 0 once `abortScaleDownDelay` is over) so `retry` only has to scale it up.
        aborted = observations.deployments.get(plan.target)
        inspect = plan.abort_scale_down_at is not None and now < plan.abort_scale_down_at
        wanted.append((plan.target, template, aborted.spec_replicas if aborted and inspect else 0))
    placements = {name: placement(name, t.accelerator, spec, observations) for name, t, _ in wanted}
    on_cpu = [name for name, t, n in wanted if t.accelerator and placements[name] == "cpu" and n]
    conditions = _conditions(
        status,
        owner.generation,
        now,
        {"Available": _available(health, observed, plan.stable, counts), "Progressing": progressing}
        | ({"Paused": paused} if plan.mode == "rolling" or has(status, "Paused") else {})
        | device_conditions(spec, status, plan, on_cpu, observations)
        | _traffic(spec, status, plan, observations),
    )
    stable_selector = manifests.revision_selector(owner, plan.stable)
    canary_selector = manifests.revision_selector(owner, plan.canary) if plan.canary else stable_selector
    blue_green = spec.strategy.blue_green is not None
    # With the service router the canary joins `<name>` only once it is given a weight.
    shared = bool(
        plan.canary and plan.weight and traffic.router_for(spec).shares_one_service and not blue_green
    )
    # Blue/green switched but not promoted yet (post-promotion analysis, or the new colour still
    # taking the old one's devices): `<name>` is the new one.
    active = canary_selector if blue_green and plan.canary and plan.phase in SWITCHED else stable_selector
    new_status = status.model_copy(
        update={
            "observed_generation": owner.generation,
            "phase": phase,
            "stable_revision": stable,
            "stable_template": stable_template,
            "rollout": _rollout(plan),
            "scale_down_revision": plan.scale_down,
            "scale_down_at": plan.scale_down_at,
            "previous_template": plan.previous_template,
            "analysis": list(plan.runs.values()) or None,
            "smoke_test": plan.smoke,
            "replicas": observed.replicas if observed else 0,
            "available_replicas": available,
            "selector": manifests.selector_string(stable_selector),
            "conditions": conditions,
        }
    )
    deadline = max(int(api.parse_duration(spec.progress_deadline).total_seconds()), 1)
    desired = [manifests.deployment(owner, name, t, n, deadline, placements[name]) for name, t, n in wanted]
    desired += [
        manifests.service(owner, owner.name, {manifests.MODEL_LABEL: owner.name} if shared else active),
        manifests.service(owner, f"{owner.name}-stable", stable_selector),
        manifests.service(owner, f"{owner.name}-canary", canary_selector),
    ]
    if spec.strategy.blue_green is not None:
        desired.append(manifests.service(owner, f"{owner.name}-preview", canary_selector))
    keep = {name for name, _, _ in wanted} | ({plan.scale_down} if plan.scale_down else set())
    delete = tuple(sorted(name for name in observations.deployments if name not in keep))
    route = Route(gateway.weights(owner.name, plan.weight or 0)) if _routes(spec) else None
    writes = ordered(desired, delete, route, f"{owner.name}-canary", observations)
    events = tuple(plan.events) + _events(status, new_status) + tuple(device_events(status, conditions))
    return Decision(new_status, writes, events, _wake_at(plan, spec), rolled_back)


def _routes(spec: api.ModelDeploymentSpec) -> bool:
    return spec.traffic.router == "gatewayAPI" and bool(spec.traffic.http_route)


def _traffic(
    spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, plan: Plan, observations: Observations
) -> dict[str, ConditionValue]:
    weight = plan.weight or 0
    routed = routing.condition(spec, observations, weight, writing=weight != routing.asked(status))
    return {"TrafficRouted": routed} if routed is not None else {}


def _rollout(plan: Plan) -> api.Rollout | None:
    """The plan's rollout in the status's shape for it: one of canary, blueGreen, aborted."""
    if plan.mode == "aborted" and plan.aborted is not None:
        aborted = api.AbortedRollout(
            revision=plan.aborted,
            reason=plan.abort_reason,
            message=plan.abort_message,
            scale_down_at=plan.abort_scale_down_at,
        )
        return api.Rollout(aborted=aborted)
    if plan.mode != "rolling" or plan.canary is None:
        return None
    if plan.phase is not None:
        blue_green = api.BlueGreenRollout(
            revision=plan.canary,
            phase=plan.phase,
            ready_time=plan.pause_start,
            promote_full=plan.promote_full or None,
        )
        return api.Rollout(blue_green=blue_green)
    canary = api.CanaryRollout(
        revision=plan.canary,
        step=plan.step or 0,
        weight=plan.weight or 0,
        pause_start_time=plan.pause_start,
        promote_full=plan.promote_full or None,
    )
    return api.Rollout(canary=canary)


def _wake_at(plan: Plan, spec: api.ModelDeploymentSpec) -> datetime | None:
    times = [t for t in (plan.scale_down_at, plan.abort_scale_down_at) if t is not None]
    if plan.mode == "rolling" and spec.analysis is not None:
        for run in plan.runs.values():
            at = runs.next_at(run, spec.analysis)
            if at is not None and run.revision == plan.canary:
                times.append(at)
    steps = spec.strategy.steps
    if plan.mode == "rolling" and plan.pause_start and plan.step is not None and plan.step < len(steps):
        pause = steps[plan.step].pause
        if pause is not None and pause.duration:
            times.append(plan.pause_start + api.parse_duration(pause.duration))
    blue_green = spec.strategy.blue_green
    if plan.mode == "rolling" and plan.pause_start and blue_green and blue_green.auto_promote:
        times.append(plan.pause_start + api.parse_duration(blue_green.auto_promotion_delay or "0s"))
    return min(times, default=None)


_PHASES: dict[Health, api.Phase] = {
    "Missing": "Degraded",
    "Ready": "Healthy",
    "Starting": "Progressing",
    "Stuck": "Degraded",
}


def _available(
    health: Health, observed: ObservedDeployment | None, serving: str, counts: str
) -> ConditionValue:
    if health == "Missing":
        return ("False", "DeploymentMissing", f"revision {serving} has no Deployment yet; creating it")
    if health == "Ready":
        return ("True", "ReplicasAvailable", counts)
    if observed is not None and observed.minimum_available:
        return ("True", "MinimumReplicasAvailable", counts)
    return ("False", "ReplicasUnavailable", counts)


def _progressing(
    plan: Plan,
    spec: api.ModelDeploymentSpec,
    health: Health,
    counts: str,
    has_stable: bool,
) -> ConditionValue:
    # Most urgent first: a stuck stable revision, then the rollout's own state, then pods coming up.
    if health == "Stuck":
        return ("False", "ProgressDeadlineExceeded", f"{counts}; no progress within spec.progressDeadline")
    if plan.mode == "aborted":
        why = f"{plan.abort_message}. " if plan.abort_message else ""
        return (
            "False",
            plan.abort_reason or "Aborted",
            f"{why}Rollout of revision {plan.target} aborted; revision {plan.stable} serves all traffic. "
            "`modelship retry` or a spec change starts again",
        )
    if plan.mode == "rolling":
        n = len(spec.strategy.canary.steps) if spec.strategy.canary else 0
        where = (
            f"canary {plan.canary}: weight {plan.weight}%, step {min((plan.step or 0) + 1, n)}/{n}"
            if spec.strategy.canary
            else f"{plan.canary}: switched, serving all traffic until it is promoted"
            if plan.phase in SWITCHED
            else f"preview {plan.canary}: no traffic until promoted"
        )
        if plan.paused:
            return ("True", "RolloutPaused", f"{where}; {plan.paused[1]}")
        if plan.promote_waiting:
            return ("True", "Promoting", f"{plan.canary}: promoting, waiting for all its replicas")
        if plan.waiting:
            return ("True", "Canarying", f"{where}; {plan.waiting}")
        return ("True", "Canarying", where)
    if plan.rolled_back:
        if health != "Ready":
            return ("True", "RollingBack", f"rolling back to revision {plan.stable}: {counts}")
        return ("False", "RolledBack", f"rolled back to revision {plan.stable}; the canary was removed")
    if health != "Ready":
        return ("True", "ReplicasStarting" if has_stable else "DeployingRevision", counts)
    return ("False", "RolloutComplete", f"revision {plan.stable} is stable and fully available")


def _conditions(
    old: api.ModelDeploymentStatus,
    generation: int,
    now: datetime,
    values: dict[str, ConditionValue],
) -> list[api.Condition]:
    previous = {c.type: c for c in old.conditions or []}
    out = []
    for type_, (state, reason, message) in values.items():
        before = previous.get(type_)
        changed = before is None or before.status != state
        out.append(
            api.Condition(
                type=type_,
                status=state,  # type: ignore[arg-type]
                reason=reason,
                message=message,
                last_transition_time=now if changed or before is None else before.last_transition_time,
                observed_generation=generation,
            )
        )
    # Conditions owned by later features (AnalysisFailed, ...) are kept as they are.
    out.extend(c for c in old.conditions or [] if c.type not in values)
    return out


def set_condition(
    status: api.ModelDeploymentStatus, type_: str, value: ConditionValue, now: datetime, generation: int
) -> api.ModelDeploymentStatus:
    """`status` with one condition set (for what only the shell can observe, e.g. a router's read-back)."""
    mine = _conditions(status, generation, now, {type_: value})[0]
    conditions = [mine if c.type == type_ else c for c in status.conditions or []]
    if all(c.type != type_ for c in conditions):
        conditions.append(mine)
    return status.model_copy(update={"conditions": conditions})


def _events(old: api.ModelDeploymentStatus, new: api.ModelDeploymentStatus) -> tuple[Event, ...]:
    events: list[Event] = []
    if new.stable_revision is not None and new.stable_revision != old.stable_revision:
        events.append(
            Event("Normal", "StableRevision", f"revision {new.stable_revision} is available and stable")
        )
    if new.phase != old.phase:
        message = next((c.message for c in new.conditions or [] if c.type == "Progressing"), "")
        events.append(Event("Warning" if new.phase == "Degraded" else "Normal", str(new.phase), message))
    return tuple(events)
