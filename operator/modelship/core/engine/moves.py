"""What a plan can do in a pass, whatever the strategy: carry out a gate's answer, abort the
rollout, promote the new revision.
"""

from __future__ import annotations

from datetime import datetime

from modelship import api
from modelship.core import gates
from modelship.core.engine.model import Event, Plan


def apply(
    plan: Plan, spec: api.ModelDeploymentSpec, gate: gates.Gate, now: datetime, holds: bool = True
) -> gates.GateState:
    """Carry out a gate's answer. `holds=False` (background analysis): an undecided run holds nothing up."""
    if gate.run is not None:
        plan.runs[gate.run.kind] = gate.run
    if gate.smoke is not None:
        plan.smoke = gate.smoke
    if gate.event is not None:
        plan.events.append(Event(*gate.event))
    if gate.state == "abort":
        abort(plan, spec, now, gate.reason, gate.message)
    elif gate.state == "pause":
        plan.paused = (gate.reason, gate.message)
    elif gate.state == "wait" and holds:
        plan.waiting = gate.message
    return gate.state


def abort(
    plan: Plan,
    spec: api.ModelDeploymentSpec,
    now: datetime,
    reason: str,
    message: str,
    keep_pods: bool = True,
) -> None:
    """Roll back now: all traffic to stable in this pass; the canary's pods (no traffic) stay for
    `abortScaleDownDelay` so people can look at them, then scale to 0."""
    strategy = spec.strategy.chosen
    delay = api.parse_duration(strategy.abort_scale_down_delay if keep_pods else "0s")
    plan.mode, plan.aborted, plan.abort_reason, plan.abort_message = "aborted", plan.target, reason, message
    plan.abort_scale_down_at = now + delay if delay else None
    pods = f"its pods scale to 0 after {delay.total_seconds():g}s" if delay else "its pods scale to 0"
    plan.events.append(
        Event("Warning", reason, f"{message}; all traffic back to stable revision {plan.stable}, {pods}")
    )


def promote(
    plan: Plan, spec: api.ModelDeploymentSpec, template: api.RevisionTemplate, now: datetime, how: str
) -> None:
    """The pointers move to the new revision (no pod restarts); the old one stays for scaleDownDelay."""
    delay = spec.strategy.chosen.scale_down_delay
    old, new = plan.stable, plan.target
    plan.previous_template = plan.stable_template
    plan.scale_down, plan.scale_down_at = old, now + api.parse_duration(delay)
    plan.stable, plan.stable_template = new, template
    plan.mode, plan.promoted, plan.stable_replicas = "steady", True, spec.replicas
    plan.events.append(
        Event(
            "Normal",
            "Promoted",
            f"revision {new} promoted to stable {how}; previous revision {old} scales down after {delay}",
        )
    )
