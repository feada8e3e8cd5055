"""The canary strategy: walk `spec.strategy.canary.steps` as far as the observations allow,
then promote.
"""

from __future__ import annotations

from datetime import datetime

from modelship import api
from modelship.core import gates, traffic
from modelship.core.engine import routing
from modelship.core.engine.model import Event, Observations, Plan, ready
from modelship.core.engine.moves import apply, promote


def walk(
    plan: Plan,
    spec: api.ModelDeploymentSpec,
    steps: list[api.CanaryStep],
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> None:
    """Advance the canary through as many steps as the observations allow, then promote it."""
    assert plan.canary is not None and plan.step is not None and plan.weight is not None
    router = traffic.router_for(spec)
    observed = observations.deployments.get(plan.canary)
    n = len(steps)
    step, weight = min(plan.step, n), plan.weight
    if plan.promote_full:
        step = n
    if spec.paused:
        plan.paused = ("PausedBySpec", "spec.paused is true; `modelship resume` continues")
    analysis = spec.analysis
    background = analysis.background if analysis is not None else None
    blocked = plan.paused is not None
    if not blocked and background is not None and "background" in plan.runs:
        assert analysis is not None
        gate = gates.analysis_gate(
            "background", plan.canary, None, "background analysis", analysis, plan.runs["background"], now
        )
        blocked = apply(plan, spec, gate, now, holds=False) in ("pause", "abort")
    if not blocked and weight == 0 and spec.smoke_test is not None:
        gate = gates.smoke_gate(spec.smoke_test, plan.canary, plan.smoke, observations.smoke, now)
        blocked = apply(plan, spec, gate, now) != "pass"
    if plan.mode == "aborted":
        return
    while not blocked and plan.paused is None and step < n:
        current, label = steps[step], f"step {step + 1}/{n}"
        if current.set_weight is not None:
            wanted = current.set_weight
            replicas = router.replicas(spec.replicas, weight, wanted, _scale(steps, step), False)
            if not ready(observed, replicas.canary):
                break
            if wanted != weight:
                plan.events.append(
                    Event("Normal", "WeightChanged", f"{label}: canary weight {weight}% -> {wanted}%")
                )
                weight = wanted
            if not routing.verified(observations, weight):
                plan.waiting = f"{label}: {routing.waiting(observations, weight)}"
                break
            step += 1
        elif current.pause is not None:
            duration = current.pause.duration
            if plan.pause_start is None:
                plan.pause_start = now
                until = f"for {duration}" if duration else "until promoted"
                plan.events.append(Event("Normal", "PauseStarted", f"{label}: paused {until}"))
            if duration is None:
                plan.paused = ("CanaryPauseStep", f"{label}: paused until `modelship promote` is run")
                break
            ends = plan.pause_start + api.parse_duration(duration)
            if now < ends:
                plan.paused = ("CanaryPauseStep", f"{label}: paused until {ends:%Y-%m-%dT%H:%M:%SZ}")
                break
            plan.pause_start, step = None, step + 1
        elif current.set_canary_scale is not None:
            step += 1  # applies through _scale from the next step on
        else:
            assert analysis is not None  # admission requires spec.analysis for analysis steps
            gate = gates.analysis_gate("step", plan.canary, step, label, analysis, plan.runs.get("step"), now)
            if apply(plan, spec, gate, now) != "pass":
                break
            step += 1
    if _aborted(plan):  # a gate in the loop rolled back
        return
    plan.step, plan.weight = step, weight
    if background is not None and step >= background.starting_step and "background" not in plan.runs:
        assert analysis is not None
        gate = gates.analysis_gate(
            "background", plan.canary, None, "background analysis", analysis, None, now
        )
        apply(plan, spec, gate, now, holds=False)

    promoting = plan.paused is None and plan.waiting is None and step >= n
    in_step = steps[step] if step < n else None
    wanted = in_step.set_weight if in_step and in_step.set_weight is not None and not plan.paused else weight
    replicas = router.replicas(spec.replicas, weight, wanted or 0, _scale(steps, step), promoting)
    plan.stable_replicas, plan.canary_replicas = replicas.stable, replicas.canary
    if not promoting:
        return
    if not ready(observed, replicas.canary):
        plan.promote_waiting = True
        return
    promote(plan, spec, template, now, f"after {n} steps")


def _aborted(plan: Plan) -> bool:
    return plan.mode == "aborted"


def _scale(steps: list[api.CanaryStep], step: int) -> api.CanaryScale | None:
    """The `setCanaryScale` in effect at `step` (the last one before it), if any."""
    for earlier in reversed(steps[:step]):
        if earlier.set_canary_scale is not None:
            return None if earlier.set_canary_scale.match_traffic_weight else earlier.set_canary_scale
    return None
