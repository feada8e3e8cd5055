"""The canary strategy: walk `spec.strategy.canary.steps` as far as the observations allow,
then promote.

One pass runs in a fixed order: the gates that hold the whole canary (a pause, background
analysis, the smoke test before any traffic), then the steps (a setWeight step completes once
the canary's pods for it are ready and the router shows the weight; a pause once its time is up;
an analysis step once its run passes; an evaluation step once its Job's score passes; a loadTest
step once its Job's pod runs, the load going on beside the next steps; a setHeaderRoute step once
the route shows its rule; an experiment step once the router shows its weight and its statistical
test passes), then the
replicas for where the walk stopped (the router's split, then what the devices allow), then the
promotion.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from modelship import api
from modelship.core import evaluation, experiment, gates, gateway, loadtest, traffic
from modelship.core.engine import routing
from modelship.core.engine.accelerator import make_room
from modelship.core.engine.model import Context, Event, Outcome, pause_of, ready
from modelship.core.engine.moves import abort, apply, promote
from modelship.core.shadow import Shadow

SECOND = timedelta(seconds=1)
LOST = "ExperimentLost"  # the abort reason when the challenger beat the candidate


def advance(ctx: Context, out: Outcome) -> Outcome:
    """The canary's outcome for this pass: as many steps as the observations allow, then promotion."""
    assert out.step is not None and out.weight is not None
    spec, steps = ctx.spec, ctx.spec.strategy.steps
    n = len(steps)
    step, weight = (n if out.promote_full else min(out.step, n)), out.weight
    out = _gates(ctx, out)
    if out.mode == "aborted":
        return out
    blocked = out.paused is not None or out.waiting is not None
    while not blocked and step < n:
        out, step, weight, done = _step(ctx, out, step, weight)
        if out.mode == "aborted":  # an analysis step rolled back
            return out
        blocked = not done
    out = out.but(step=step, weight=weight)
    if (
        out.challenger is not None
        and experiment.challenger_of(spec, ctx.observations.owner.name, step) is None
    ):
        # The experiment is over (or was moved past): the challenger leaves the route; its Service
        # and pods go once a gateway applied that (`status.finish`).
        out = out.but(challenger=None, challenger_weight=0)
    out = _background(ctx, out, step)

    router = traffic.router_for(spec)
    promoting = out.paused is None and out.waiting is None and step >= n
    in_step = steps[step] if step < n else None
    asked = _asks(in_step) if in_step is not None else None
    wanted = asked if asked is not None and not out.paused else weight
    replicas = router.replicas(spec.replicas, weight, wanted or 0, _scale(steps, step), promoting)
    out = out.but(stable_replicas=replicas.stable, canary_replicas=replicas.canary)
    if promoting and ready(ctx.observed(ctx.target), replicas.canary):
        return promote(out, ctx, f"after {n} steps")
    out, _ = make_room(ctx, out.but(promote_waiting=promoting))  # the devices may allow fewer pods
    return out


def _gates(ctx: Context, out: Outcome) -> Outcome:
    """What holds every step: a pause (spec.paused, status.pause), a background run that failed or
    paused, the smoke test."""
    spec, analysis = ctx.spec, ctx.spec.analysis
    pause = pause_of(ctx)
    if pause is not None:
        return out.but(paused=pause)
    background = analysis.background if analysis is not None else None
    if background is not None and "background" in out.runs:
        assert analysis is not None
        gate = gates.analysis_gate(
            "background", ctx.target, None, "background analysis", analysis, out.runs["background"], ctx.now
        )
        out, state = apply(out, ctx, gate, holds=False)
        if state in ("pause", "abort"):
            return out
    if out.weight == 0 and spec.smoke_test is not None:
        gate = gates.smoke_gate(spec.smoke_test, ctx.target, out.smoke, ctx.observations.smoke, ctx.now)
        out, _ = apply(out, ctx, gate)
    return out


def _step(ctx: Context, out: Outcome, step: int, weight: int) -> tuple[Outcome, int, int, bool]:
    """One step: (outcome, step, weight, whether the step completed)."""
    steps, spec = ctx.spec.strategy.steps, ctx.spec
    current, label = steps[step], f"step {step + 1}/{len(steps)}"
    if current.set_weight is not None:
        out, weight, done = _weigh(ctx, out, step, weight, current.set_weight, label)
        return out, step + int(done), weight, done
    if current.pause is not None:
        duration = current.pause.duration
        start = out.pause_start
        if start is None:
            # `now` is the pass's time cut to whole seconds (what a status timestamp holds): the
            # pause starts at the next whole second, so it is never shorter than asked.
            start = ctx.now + SECOND
            until = f"for {duration}" if duration else "until promoted"
            out = out.but(pause_start=start).said(Event("Normal", "PauseStarted", f"{label}: paused {until}"))
        if duration is None:
            return (
                out.but(paused=("CanaryPauseStep", f"{label}: paused until `modelship promote` is run")),
                step,
                weight,
                False,
            )
        ends = start + api.parse_duration(duration)
        if ctx.now < ends:
            return (
                out.but(paused=("CanaryPauseStep", f"{label}: paused until {ends:%Y-%m-%dT%H:%M:%SZ}")),
                step,
                weight,
                False,
            )
        return out.but(pause_start=None), step + 1, weight, True
    if current.set_canary_scale is not None:
        return out, step + 1, weight, True  # applies through _scale from the next step on
    if current.evaluation is not None:
        # Scored through `<name>-canary` before any traffic: its pods must be up first.
        replicas = traffic.router_for(spec).replicas(
            spec.replicas, weight, weight, _scale(steps, step), False
        )
        if not ready(ctx.observed(ctx.target), replicas.canary):
            return out.but(waiting=f"{label}: evaluation waits for the canary's pods"), step, weight, False
        settings = evaluation.analysis(current.evaluation)
        run = out.runs.get(evaluation.KIND)
        gate = gates.analysis_gate(evaluation.KIND, ctx.target, step, label, settings, run, ctx.now)
        out, state = apply(out, ctx, gate)
        return (out, step + 1, weight, True) if state == "pass" else (out, step, weight, False)
    if current.load_test is not None:
        return _load_test(ctx, out, step, weight, current.load_test, label)
    if current.experiment is not None:
        return _experiment(ctx, out, step, weight, current.experiment, label)
    if current.set_header_route is not None:
        return _header_route(ctx, out, step, weight, current.set_header_route, label)
    if current.shadow is not None:
        return _shadow(ctx, out, step, weight, current.shadow.percent, label)
    assert spec.analysis is not None  # admission requires spec.analysis for analysis steps
    gate = gates.analysis_gate("step", ctx.target, step, label, spec.analysis, out.runs.get("step"), ctx.now)
    out, state = apply(out, ctx, gate)
    return (out, step + 1, weight, True) if state == "pass" else (out, step, weight, False)


def _weigh(
    ctx: Context, out: Outcome, step: int, weight: int, wanted: int, label: str, challenger: str | None = None
) -> tuple[Outcome, int, bool]:
    """Move the canary's weight to `wanted` (a setWeight step, an experiment's), and an experiment's
    `challenger` to the same weight: once the pods of both for it are ready and the router can serve
    them; (outcome, weight, whether the router shows it)."""
    spec, steps = ctx.spec, ctx.spec.strategy.steps
    replicas = traffic.router_for(spec).replicas(spec.replicas, weight, wanted, _scale(steps, step), False)
    if not ready(ctx.observed(ctx.target), replicas.canary):
        return out, weight, False
    if challenger is not None and not ready(ctx.observed(challenger), replicas.canary):
        return out.but(waiting=f"{label}: waiting for the challenger {challenger}'s pods"), weight, False
    rival = wanted if challenger is not None else 0
    moving = wanted != weight or rival != out.challenger_weight
    unserved = (
        routing.unserved(ctx.observations, wanted, out.stable, ctx.target, replicas.canary, challenger, rival)
        if moving
        else None
    )
    if unserved is not None:
        return out.but(waiting=f"{label}: {unserved}"), weight, False
    if moving:
        also = f", challenger {challenger} {rival}%" if challenger is not None else ""
        out = out.said(
            Event("Normal", "WeightChanged", f"{label}: canary weight {weight}% -> {wanted}%{also}")
        ).but(challenger_weight=rival)
        weight = wanted
    kept = routing.sessions(spec, ctx.observations.owner.name, weight, out.stable, ctx.target)
    if not routing.verified(ctx.observations, weight, kept, rival):
        waiting = routing.waiting(ctx.observations, weight, kept, rival)
        return out.but(waiting=f"{label}: {waiting}"), weight, False
    return out, weight, True


def _experiment(
    ctx: Context, out: Outcome, step: int, weight: int, trial: api.Experiment, label: str
) -> tuple[Outcome, int, int, bool]:
    """An experiment step: the candidate's weight as a setWeight step sets it (and a challenger's, the
    same, once its pods are up); once the router shows it, the experiment's run starts (its start
    opens the window both revisions are counted over) and decides (`core.experiment`): Successful
    completes the step, Failed aborts (`ExperimentLost` against a challenger), Inconclusive pauses."""
    found = experiment.challenger_of(ctx.spec, ctx.observations.owner.name, step)
    # A challenger that is the stable revision is stable: compared as such, never a second Deployment.
    rival = found[0] if found is not None and found[0] not in (out.stable, ctx.target) else None
    if rival != out.challenger:
        # A new challenger (or another one: the spec changed it): the one before leaves the route
        # first, and `<name>-challenger` moves to the new pods only once a gateway applied that.
        out = out.but(challenger=rival, challenger_weight=0)
    out, weight, shown = _weigh(ctx, out, step, weight, trial.weight, label, rival)
    if not shown:
        return out, step, weight, False
    settings = experiment.analysis(ctx.spec, trial)
    run = out.runs.get(experiment.KIND)
    if run is not None and run.baseline != rival:
        run = None  # a run against another baseline says nothing about this one
    gate = gates.analysis_gate(experiment.KIND, ctx.target, step, label, settings, run, ctx.now)
    if gate.run is not None and gate.run.baseline != rival:
        gate = dataclasses.replace(gate, run=gate.run.model_copy(update={"baseline": rival}))
    if gate.state == "abort" and gate.run is not None and gate.run.phase == "Failed" and rival is not None:
        gate = dataclasses.replace(gate, reason=LOST, message=f"{label}: {experiment.lost(trial, gate.run)}")
    out, state = apply(out, ctx, gate)
    return (out, step + 1, weight, True) if state == "pass" else (out, step, weight, False)


def _asks(step: api.CanaryStep) -> int | None:
    """The weight a step asks for the canary, if it sets one."""
    return step.experiment.weight if step.experiment is not None else step.set_weight


def _load_test(
    ctx: Context, out: Outcome, step: int, weight: int, load: api.LoadTest, label: str
) -> tuple[Outcome, int, int, bool]:
    """A loadTest step: once the canary's pods are up, its Job is started (the step's start is
    recorded first: it names the Job); the step completes once the Job's pod runs."""
    spec, steps = ctx.spec, ctx.spec.strategy.steps
    replicas = traffic.router_for(spec).replicas(spec.replicas, weight, weight, _scale(steps, step), False)
    if not ready(ctx.observed(ctx.target), replicas.canary):
        return out.but(waiting=f"{label}: the load test waits for the canary's pods"), step, weight, False
    service = f"{ctx.observations.owner.name}-canary"
    if out.pause_start is None:
        what = f"{load.rate:g} requests/s for {load.duration} on {service}"
        out = out.but(pause_start=ctx.now, recheck=True)
        out = out.said(Event("Normal", "LoadTestStarted", f"{label}: load test: {what}"))
        return out, step, weight, False
    name = loadtest.job_name(ctx.observations.owner, ctx.target, step, out.pause_start)
    found = loadtest.state(ctx.observations.jobs.get(name), out.pause_start, ctx.now, load)
    if found.phase == "failed":
        return abort(out, ctx, loadtest.FAILED, f"{label}: {found.message}"), step, weight, False
    if found.phase == "starting":
        waiting = f"{label}: the load test Job {name} is starting"
        return out.but(waiting=waiting, recheck=True), step, weight, False
    return out.but(pause_start=None), step + 1, weight, True


def _header_route(
    ctx: Context, out: Outcome, step: int, weight: int, route: api.HeaderRoute, label: str
) -> tuple[Outcome, int, int, bool]:
    """A setHeaderRoute step: once the canary's pods are up and `<name>-canary` lists one, the
    route is added to (or, without `match`, removed from) the header routes in effect; the step
    completes once the HTTPRoute read back shows them. They stay until promotion or abort."""
    kept = tuple(r for r in out.header_routes if r.name != route.name)
    wanted = (*kept, route) if route.match else kept
    if wanted != out.header_routes:
        waiting = _canary_waiting(ctx, step, weight, "the header route") if route.match else None
        if waiting is not None:
            return out.but(waiting=f"{label}: {waiting}"), step, weight, False
        rule = gateway.header_rule_name(ctx.observations.owner.name, route.name)
        what = (
            f"requests with {route.shown} go to {ctx.observations.owner.name}-canary ({rule})"
            if route.match
            else f"header route {route.name} removed"
        )
        out = out.but(header_routes=wanted).said(Event("Normal", "HeaderRouteSet", f"{label}: {what}"))
    if not routing.headers_verified(ctx.observations, out.header_routes):
        waiting = f"{label}: {routing.headers_waiting(ctx.observations, out.header_routes)}"
        return out.but(waiting=waiting), step, weight, False
    return out, step + 1, weight, True


def _canary_waiting(ctx: Context, step: int, weight: int, what: str) -> str | None:
    """Why `what`, which sends requests to `<name>-canary` whatever the weight, must wait: the
    canary's pods are not up, or the Service lists none yet; None once it may go on."""
    spec = ctx.spec
    replicas = traffic.router_for(spec).replicas(
        spec.replicas, weight, weight, _scale(spec.strategy.steps, step), False
    )
    if not ready(ctx.observed(ctx.target), replicas.canary):
        return f"{what} waits for the canary's pods"
    return routing.canary_unserved(ctx.observations, ctx.target)


def _shadow(
    ctx: Context, out: Outcome, step: int, weight: int, percent: int, label: str
) -> tuple[Outcome, int, int, bool]:
    """A shadow step: once the canary's pods are up and `<name>-canary` lists one, the route marks
    `percent`% of the stable pods' requests for copying to the candidate (0: none); the step
    completes once the HTTPRoute read back shows it. It stays until promotion, abort or a later
    shadow step."""
    wanted = percent or None
    if wanted != out.shadow_percent:
        waiting = _canary_waiting(ctx, step, weight, "the shadow") if wanted else None
        if waiting is not None:
            return out.but(waiting=f"{label}: {waiting}"), step, weight, False
        name = ctx.observations.owner.name
        what = (
            f"the stable pods copy {percent}% of their requests to {name}-canary and compare its answers"
            if wanted
            else "shadow traffic stopped"
        )
        out = out.but(shadow_percent=wanted).said(Event("Normal", "ShadowSet", f"{label}: {what}"))
    asked = Shadow(wanted, ctx.target) if wanted else None
    if not routing.shadow_verified(ctx.observations, asked):
        return out.but(waiting=f"{label}: {routing.shadow_waiting(ctx.observations)}"), step, weight, False
    return out, step + 1, weight, True


def _background(ctx: Context, out: Outcome, step: int) -> Outcome:
    """Start the background analysis once the walk reaches its `startingStep`."""
    analysis = ctx.spec.analysis
    background = analysis.background if analysis is not None else None
    if background is None or step < background.starting_step or "background" in out.runs:
        return out
    assert analysis is not None
    gate = gates.analysis_gate("background", ctx.target, None, "background analysis", analysis, None, ctx.now)
    out, _ = apply(out, ctx, gate, holds=False)
    return out


def _scale(steps: list[api.CanaryStep], step: int) -> api.CanaryScale | None:
    """The `setCanaryScale` in effect at `step` (the last one before it), if any."""
    for earlier in reversed(steps[:step]):
        if earlier.set_canary_scale is not None:
            return None if earlier.set_canary_scale.match_traffic_weight else earlier.set_canary_scale
    return None
