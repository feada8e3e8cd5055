"""What a pass can do to its outcome, whatever the strategy: carry out a gate's answer, abort the
rollout, promote the new revision. Each returns a new Outcome.
"""

from __future__ import annotations

from modelship import api
from modelship.core import gates
from modelship.core.engine.model import Context, Event, Outcome


def apply(
    out: Outcome, ctx: Context, gate: gates.Gate, holds: bool = True
) -> tuple[Outcome, gates.GateState]:
    """Carry out a gate's answer. `holds=False` (background analysis): an undecided run holds nothing up."""
    if gate.run is not None:
        out = out.with_run(gate.run)
    if gate.smoke is not None:
        out = out.but(smoke=gate.smoke)
    if gate.event is not None:
        out = out.said(Event(*gate.event))
    if gate.state == "abort":
        out = abort(out, ctx, gate.reason, gate.message)
    elif gate.state == "pause":
        out = out.but(paused=(gate.reason, gate.message))
    elif gate.state == "wait" and holds:
        out = out.but(waiting=gate.message)
    return out, gate.state


def abort(out: Outcome, ctx: Context, reason: str, message: str, keep_pods: bool = True) -> Outcome:
    """Roll back now: all traffic to stable in this pass; the canary's pods (no traffic) stay for
    `abortScaleDownDelay` so people can look at them, then scale to 0."""
    strategy = ctx.spec.strategy.chosen
    delay = api.parse_duration(strategy.abort_scale_down_delay if keep_pods else "0s")
    pods = f"its pods scale to 0 after {delay.total_seconds():g}s" if delay else "its pods scale to 0"
    return out.but(
        mode="aborted",
        aborted=ctx.target,
        abort_reason=reason,
        abort_message=message,
        abort_scale_down_at=ctx.now + delay if delay else None,
    ).said(Event("Warning", reason, f"{message}; all traffic back to stable revision {out.stable}, {pods}"))


def promote(out: Outcome, ctx: Context, how: str) -> Outcome:
    """The pointers move to the new revision (no pod restarts); the old one stays for scaleDownDelay."""
    delay = ctx.spec.strategy.chosen.scale_down_delay
    old, new = out.stable, ctx.target
    return out.but(
        previous_template=out.stable_template,
        scale_down=old,
        scale_down_at=ctx.now + api.parse_duration(delay),
        stable=new,
        stable_template=ctx.template,
        mode="steady",
        promoted=True,
        stable_replicas=ctx.spec.replicas,
    ).said(
        Event(
            "Normal",
            "Promoted",
            f"revision {new} promoted to stable {how}; previous revision {old} scales down after {delay}",
        )
    )
