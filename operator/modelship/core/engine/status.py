"""A out rendered into a Decision: the status (phase, pointers, conditions), the manifests to
apply, the Deployments to delete, the Jobs to stop, the events (recorded in the status: `events`),
and when to decide again.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime

from modelship import api
from modelship.core import evaluation, experiment, gateway, loadtest, manifests, notifications, traffic
from modelship.core.analysis import cadence, runs
from modelship.core.engine import jobs, routing
from modelship.core.engine.accelerator import device_conditions, device_events, placement
from modelship.core.engine.events import recorded
from modelship.core.engine.model import (
    SWITCHED,
    ConditionValue,
    Context,
    Decision,
    Event,
    Health,
    Observations,
    ObservedDeployment,
    Outcome,
    Route,
    has,
    health_of,
)
from modelship.core.engine.writes import ordered
from modelship.core.shadow import Shadow


def finish(ctx: Context, out: Outcome) -> Decision:
    """The one renderer: an outcome into the Decision (it changes nothing in the outcome)."""
    spec, status, observations, now, template = ctx.spec, ctx.status, ctx.observations, ctx.now, ctx.template
    owner = observations.owner
    observed = observations.deployments.get(out.stable)
    health = health_of(observed, out.stable_replicas)
    rolled_back: str | None = None  # this pass rolled a rollout back: why
    if out.mode == "aborted" and (status.aborted is None or status.aborted.reason is None):
        rolled_back = out.abort_reason
    elif out.rolled_back and status.rolling is not None:
        rolled_back = "RolledBack"
    stable: str | None = out.stable
    stable_template: api.RevisionTemplate | None = out.stable_template
    phase: api.Phase
    routed = _traffic(spec, out, observations)
    if out.mode == "first":
        phase = _PHASES[health] if observed is not None else "Pending"
        _, routed_why, _ = routed.get("TrafficRouted", ("True", "", ""))
        if phase == "Healthy" and routed_why == routing.ENDPOINTS_PENDING:
            phase = "Progressing"  # ready pods, but none the route's backend lists: requests would fail
        if phase != "Healthy":
            stable = stable_template = None
    elif health in ("Missing", "Stuck") or out.mode == "aborted":
        phase = "Degraded"
    elif out.mode == "rolling":
        phase = "Paused" if out.paused else "Progressing"
    elif out.rolled_back:
        phase = "RolledBack"  # at once: the canary is gone, even while stable scales back up
    elif health != "Ready":
        phase = "Progressing"
    else:
        phase = "Healthy"

    available = observed.available_replicas if observed else 0
    counts = f"revision {out.stable}: {available}/{out.stable_replicas} replicas available"
    failure = observed.model_failure if observed else None
    progressing = _progressing(out, spec, health, counts, stable is not None, failure)
    paused = ("True", out.paused[0], out.paused[1]) if out.paused else ("False", "NotPaused", "not paused")
    wanted = [(out.stable, out.stable_template, out.stable_replicas)]
    if out.mode == "rolling" and out.canary:
        wanted.append((out.canary, template, out.canary_replicas))
        rival = experiment.challenger_of(spec, owner.name, out.step)
        if out.challenger is not None and rival is not None and rival[0] == out.challenger:
            wanted.append((out.challenger, rival[1], out.canary_replicas))  # as many pods as the canary
    elif out.mode == "aborted":
        # Kept (at 0 once `abortScaleDownDelay` is over) so `retry` only has to scale it up.
        aborted = observations.deployments.get(ctx.target)
        inspect = out.abort_scale_down_at is not None and now < out.abort_scale_down_at
        wanted.append((ctx.target, template, aborted.spec_replicas if aborted and inspect else 0))
    placements = {name: placement(name, t.accelerator, spec, observations) for name, t, _ in wanted}
    on_cpu = [name for name, t, n in wanted if t.accelerator and placements[name] == "cpu" and n]
    conditions = _conditions(
        status,
        owner.generation,
        now,
        {"Available": _available(health, observed, out.stable, counts), "Progressing": progressing}
        | ({"Paused": paused} if out.mode == "rolling" or has(status, "Paused") else {})
        | device_conditions(spec, status, out, on_cpu, observations)
        | routed
        | routing.reach(spec, status)
        | readiness(out, health, progressing, routed.get("TrafficRouted"))
        | notifications.condition(observations.notifications),
    )
    stable_selector = manifests.revision_selector(owner, out.stable)
    canary_selector = manifests.revision_selector(owner, out.canary) if out.canary else stable_selector
    held = routing.draining(observations, out.canary or out.stable, out.stable)
    canary_service = manifests.revision_selector(owner, held) if held else canary_selector
    blue_green = spec.strategy.blue_green is not None
    # With the service router the canary joins `<name>` only once it is given a weight.
    shared = bool(
        out.canary and out.weight and traffic.router_for(spec).shares_one_service and not blue_green
    )
    # Blue/green switched but not promoted yet (post-promotion analysis, or the new colour still
    # taking the old one's devices): `<name>` is the new one.
    active = canary_selector if blue_green and out.canary and out.phase in SWITCHED else stable_selector
    scaled_selector, scaled_replicas = _scaled(owner.name, observations, active if blue_green else None)
    new_status = status.model_copy(
        update={
            "observed_generation": owner.generation,
            "phase": phase,
            "stable_revision": stable,
            "stable_template": stable_template,
            "rollout": _rollout(out, routing.actual_weight(spec, observations, out)),
            "scale_down_revision": out.scale_down,
            "scale_down_at": out.scale_down_at,
            "previous_template": out.previous_template,
            "analysis": list(out.runs.values()) or None,
            "smoke_test": out.smoke,
            "replicas": scaled_replicas,
            "available_replicas": available,
            "selector": manifests.selector_string(scaled_selector),
            "conditions": conditions,
        }
    )
    deadline = max(int(api.parse_duration(spec.progress_deadline).total_seconds()), 1)
    desired = [manifests.deployment(owner, name, t, n, deadline, placements[name]) for name, t, n in wanted]
    desired += [
        manifests.service(owner, owner.name, {manifests.MODEL_LABEL: owner.name} if shared else active),
        manifests.service(owner, f"{owner.name}-stable", stable_selector),
        manifests.service(owner, f"{owner.name}-canary", canary_service),
    ]
    if spec.strategy.blue_green is not None:
        desired.append(manifests.service(owner, f"{owner.name}-preview", canary_selector))
    challenger, unrouted = _challenger_service(owner, out, observations)
    desired += challenger
    rival_held = routing.draining(
        observations, out.challenger or out.stable, out.stable, gateway.challenger_service(owner.name)
    )
    keep = {name for name, _, _ in wanted} | {
        r for r in (out.scale_down, held, out.challenger, rival_held) if r
    }
    gone = {name for name in observations.deployments if name not in keep}
    served = gone & routing.still_served(observations)
    delete = tuple(sorted(gone - served))
    weight = out.weight or 0
    kept = routing.sessions(spec, owner.name, weight, out.stable, out.canary)
    routed_weights = gateway.weights(owner.name, weight, out.challenger_weight)
    route = Route(routed_weights, out.header_routes, kept) if _routes(spec) else None
    if route is not None:  # both routers mark requests for a shadow (admission refuses it without one)
        route = dataclasses.replace(route, shadow=shadowing(out))
    stop = jobs.stale(owner, spec, new_status, observations.jobs)
    writes = ordered(desired, delete, route, f"{owner.name}-canary", observations, stop, unrouted)
    events, record = recorded(
        status,
        tuple(out.events)
        + _events(status, new_status)
        + tuple(device_events(status, conditions))
        + tuple(routing.reach_events(status, conditions)),
        observations,
        now,
    )
    new_status = new_status.model_copy(update={"pending_events": record})
    lingering = not challenger and routing.challenger_sent(observations)  # its Service waits for the gateway
    draining = bool(held or served or rival_held or lingering)
    return Decision(new_status, writes, events, _wake_at(ctx, out, draining), rolled_back)


def _challenger_service(
    owner: manifests.Owner, out: Outcome, observations: Observations
) -> tuple[list[manifests.Manifest], tuple[str, ...]]:
    """`<name>-challenger` while an experiment runs a challenger: (the Service to apply, the Services
    to delete). It selects the challenger (or, while the route may still send to it, the revision
    whose pods it lists: `routing.draining`); once the experiment is over it is deleted, but only
    when the route as read sends it nothing and no gateway is behind (a backend whose Service is gone
    answers 503)."""
    name = gateway.challenger_service(owner.name)
    if out.mode == "rolling" and out.challenger is not None:
        held = routing.draining(observations, out.challenger, out.stable, name)
        return [
            manifests.service(owner, name, manifests.revision_selector(owner, held or out.challenger))
        ], ()
    exists = observations.services is not None and name in observations.services
    return [], ((name,) if exists and not routing.challenger_sent(observations) else ())


def _scaled(
    name: str, observations: Observations, active: dict[str, str] | None
) -> tuple[dict[str, str], int]:
    """What the `scale` subresource reports to an autoscaler (status.selector, status.replicas):
    the pods that take the traffic `spec.replicas` is sized for, and how many exist. With a canary
    that is every pod of the model (both revisions share the load, so the autoscaler averages over
    both); with blue/green (`active`: the selector `<name>` has) only the serving colour, as Argo
    Rollouts does: an idle preview would dilute the averages."""
    if active is None:
        return {manifests.MODEL_LABEL: name}, sum(d.replicas for d in observations.deployments.values())
    observed = observations.deployments.get(active[manifests.REVISION_LABEL])
    return active, observed.replicas if observed is not None else 0


def shadowing(out: Outcome) -> Shadow | None:
    """The shadow the route marks requests for: a shadow step's percent, to the candidate."""
    return Shadow(out.shadow_percent, out.canary) if out.shadow_percent and out.canary else None


def _routes(spec: api.ModelDeploymentSpec) -> bool:
    return traffic.route_of(spec) is not None


def _traffic(
    spec: api.ModelDeploymentSpec, out: Outcome, observations: Observations
) -> dict[str, ConditionValue]:
    routed = routing.condition(spec, observations, out.weight or 0, out.challenger_weight)
    if routed is not None and routed[0] == "True" and out.mode == "first":
        routed = routing.first_served(observations, out.stable) or routed
    return {"TrafficRouted": routed} if routed is not None else {}


def _rollout(out: Outcome, actual_weight: int) -> api.Rollout | None:
    """The out's rollout in the status's shape for it: one of canary, blueGreen, aborted
    (`actual_weight`: the share of requests a canary really gets)."""
    if out.mode == "aborted" and out.aborted is not None:
        aborted = api.AbortedRollout(
            revision=out.aborted,
            reason=out.abort_reason,
            message=out.abort_message,
            scale_down_at=out.abort_scale_down_at,
        )
        return api.Rollout(aborted=aborted)
    if out.mode == "steady" and out.rolled_back is not None:
        return api.Rollout(rolled_back=api.RolledBackRollout(revision=out.rolled_back))
    if out.mode != "rolling" or out.canary is None:
        return None
    if out.phase is not None:
        blue_green = api.BlueGreenRollout(
            revision=out.canary,
            phase=out.phase,
            ready_time=out.pause_start,
            promote_full=out.promote_full or None,
        )
        return api.Rollout(blue_green=blue_green)
    canary = api.CanaryRollout(
        revision=out.canary,
        step=out.step or 0,
        weight=out.weight or 0,
        actual_weight=actual_weight,
        header_routes=list(out.header_routes) or None,
        shadow_percent=out.shadow_percent,
        challenger=(
            api.ChallengerRollout(revision=out.challenger, weight=out.challenger_weight)
            if out.challenger is not None
            else None
        ),
        pause_start_time=out.pause_start,
        promote_full=out.promote_full or None,
    )
    return api.Rollout(canary=canary)


def _wake_at(ctx: Context, out: Outcome, draining: bool) -> datetime | None:
    """When to decide again unasked (`draining`: a Service or a Deployment waits for the gateway
    or the EndpointSlices to move on)."""
    spec = ctx.spec
    times = [t for t in (out.scale_down_at, out.abort_scale_down_at) if t is not None]
    for run in out.runs.values() if out.mode == "rolling" else ():
        analysis = evaluation.analysis_of(spec, run)
        at = runs.next_at(run, analysis) if analysis is not None else None
        if analysis is not None and at is not None and run.revision == out.canary:
            # A round still due was not measured this pass (its Job runs): look again an interval on.
            times.append(max(at, ctx.now + api.parse_duration(analysis.interval)))
            sooner = cadence.wake(run, analysis, ctx.observations.scrape, ctx.now)
            if sooner is not None:
                times.append(sooner)
    if out.recheck and out.mode == "rolling":
        times.append(ctx.now + loadtest.RECHECK)
    recheck = routing.recheck_at(ctx.observations, ctx.now, draining)
    if recheck is not None and (out.mode == "rolling" or draining):
        times.append(recheck)
    steps = spec.strategy.steps
    if out.mode == "rolling" and out.pause_start and out.step is not None and out.step < len(steps):
        pause = steps[out.step].pause
        if pause is not None and pause.duration:
            times.append(out.pause_start + api.parse_duration(pause.duration))
    blue_green = spec.strategy.blue_green
    if out.mode == "rolling" and out.pause_start and blue_green and blue_green.auto_promote:
        times.append(out.pause_start + api.parse_duration(blue_green.auto_promotion_delay or "0s"))
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
    out: Outcome,
    spec: api.ModelDeploymentSpec,
    health: Health,
    counts: str,
    has_stable: bool,
    model_failure: str | None = None,
) -> ConditionValue:
    # Most urgent first: a stuck stable revision, then the rollout's own state, then pods coming up.
    if health == "Stuck" and model_failure is not None:
        return ("False", "ModelChecksumMismatch", f"{counts}; {model_failure}")
    if health == "Stuck":
        return ("False", "ProgressDeadlineExceeded", f"{counts}; no progress within spec.progressDeadline")
    if out.mode == "aborted":
        why = f"{out.abort_message}. " if out.abort_message else ""
        return (
            "False",
            out.abort_reason or "Aborted",
            f"{why}Rollout of revision {out.aborted} aborted; revision {out.stable} serves all traffic. "
            "`modelship retry` or a spec change starts again",
        )
    if out.mode == "rolling":
        n = len(spec.strategy.canary.steps) if spec.strategy.canary else 0
        where = (
            f"canary {out.canary}: weight {out.weight}%, {out.step or 0}/{n} steps done"
            if spec.strategy.canary
            else f"{out.canary}: switched, serving all traffic until it is promoted"
            if out.phase in SWITCHED
            else f"preview {out.canary}: no traffic until promoted"
        )
        if out.paused:
            return ("True", "RolloutPaused", f"{where}; {out.paused[1]}")
        if out.promote_waiting:
            waiting = out.waiting or "waiting for all its replicas"
            return ("True", "Promoting", f"{out.canary}: promoting, {waiting}")
        if out.waiting:
            return ("True", "Canarying", f"{where}; {out.waiting}")
        return ("True", "Canarying", where)
    if out.rolled_back:
        if health != "Ready":
            return ("True", "RollingBack", f"rolling back to revision {out.stable}: {counts}")
        return ("False", "RolledBack", f"rolled back to revision {out.stable}; the canary was removed")
    if health != "Ready":
        return ("True", "ReplicasStarting" if has_stable else "DeployingRevision", counts)
    if not has_stable:  # a first deploy, ready, whose route's backend lists none of its pods yet
        return ("True", "DeployingRevision", f"{counts}; waiting for its Service to list a ready pod")
    return ("False", "RolloutComplete", f"revision {out.stable} is stable and fully available")


# The conditions tools read (docs/gitops.md): `Ready` for `kubectl wait` and people; `Reconciling`
# and `Stalled` with kstatus' meaning, which Flux and cli-utils read. At most one of Reconciling
# and Stalled is True, and both are False once the desired revision serves.
READY, RECONCILING, STALLED = "Ready", "Reconciling", "Stalled"


def readiness(
    out: Outcome, health: Health, progressing: ConditionValue, routed: ConditionValue | None
) -> dict[str, ConditionValue]:
    """`Ready`, `Reconciling` and `Stalled` for one pass. Ready is True only when the spec's revision
    is the stable one and serves: every replica available, no rollout, the route (if any) showing
    it. An aborted rollout (by hand or by analysis) is Stalled, not broken: the candidate was
    refused, stable serves all traffic (`Available` stays True), and nothing moves until
    `modelship retry` or a new spec, so `Ready` is False with the refusal as its reason."""
    _, why, message = progressing
    if out.mode == "aborted":
        reason = out.abort_reason or "Aborted"
        return _settled(("False", reason, message), ("True", reason, message))
    if health == "Stuck":  # the stable revision cannot come up: a new spec (or a fix) is needed
        return _settled(("False", why, message), ("True", why, message))
    if routed is not None and routed[0] != "True" and out.mode != "rolling":
        _, route_why, route_message = routed
        if routed == gateway.MISSING:  # nobody will create the route unless the spec changes
            return _settled(("False", route_why, route_message), ("True", route_why, route_message))
        return _working(route_why, route_message)
    done = out.mode in ("steady", "first") and health == "Ready"
    if not done:
        return _working(why, message)
    reason = "RolledBack" if out.rolled_back else "RolloutComplete"
    ready_message = f"revision {out.stable} is stable and serves all traffic"
    if out.rolled_back:
        ready_message += f" (the rollout of {out.rolled_back} was taken back)"
    return {
        READY: ("True", reason, ready_message),
        RECONCILING: ("False", reason, ready_message),
        STALLED: ("False", reason, ready_message),
    }


def _working(reason: str, message: str) -> dict[str, ConditionValue]:
    """Work in flight: a rollout, a paused step waiting for `promote`, pods coming up."""
    return {
        READY: ("False", reason, message),
        RECONCILING: ("True", reason, message),
        STALLED: ("False", reason, message),
    }


def _settled(ready: ConditionValue, stalled: ConditionValue) -> dict[str, ConditionValue]:
    """No progress without a change from outside: a new spec, `retry`, or a fix in the cluster."""
    return {READY: ready, RECONCILING: ("False", stalled[1], stalled[2]), STALLED: stalled}


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
