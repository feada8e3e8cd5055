"""The blue/green strategy: a preview behind `<name>-preview` with no traffic, its gates, then
the switch in one move.
"""

from __future__ import annotations

from datetime import datetime

from modelship import api, gates
from modelship.engine.model import Event, Observations, Plan, ready
from modelship.engine.moves import apply, promote


def preview(
    plan: Plan,
    spec: api.ModelDeploymentSpec,
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> None:
    """Blue/green: the new revision runs behind `<name>-preview` with no traffic. Once ready it
    must pass the smoke test and the pre-promotion analysis; then a promotion (manual, or
    automatic after `autoPromotionDelay`) scales it up and swaps the selectors. With a
    post-promotion analysis the switch comes first (`currentStep` 2, the old revision still
    up) and the pointers move only when it passes; failure switches back."""
    assert plan.canary is not None and spec.strategy.blue_green is not None
    blue_green = spec.strategy.blue_green
    observed = observations.deployments.get(plan.canary)
    preview = blue_green.preview_replicas or spec.replicas
    plan.weight, plan.canary_replicas = 0, preview
    if spec.paused:
        plan.paused = ("PausedBySpec", "spec.paused is true; `modelship resume` continues")
        return
    step = plan.step or 0
    if step < 2 and not plan.promote_full and not (step == 1 and _gates_passed(plan, spec)):
        if not ready(observed, preview):
            return
        if plan.pause_start is None:
            plan.pause_start = now
            plan.events.append(
                Event(
                    "Normal",
                    "PreviewReady",
                    f"preview {plan.canary} is ready behind {observations.owner.name}-preview",
                )
            )
        if spec.smoke_test is not None:
            gate = gates.smoke_gate(spec.smoke_test, plan.canary, plan.smoke, observations.smoke, now)
            if apply(plan, spec, gate, now) != "pass":
                return
        if blue_green.pre_promotion_analysis and spec.analysis is not None:
            gate = gates.analysis_gate(
                "prePromotion",
                plan.canary,
                None,
                "pre-promotion",
                spec.analysis,
                plan.runs.get("prePromotion"),
                now,
            )
            if apply(plan, spec, gate, now) != "pass":
                return
        delay = api.parse_duration(blue_green.auto_promotion_delay or "0s")
        if step == 0 and (not blue_green.auto_promote or now < plan.pause_start + delay):
            until = (
                "`modelship promote` is run"
                if not blue_green.auto_promote
                else f"{plan.pause_start + delay:%H:%M:%SZ}"
            )
            plan.paused = ("PreviewPause", f"preview {plan.canary} ready; traffic switches when {until}")
            return
    plan.step, plan.pause_start, plan.canary_replicas = max(step, 1), None, spec.replicas
    if not ready(observed, spec.replicas):
        plan.promote_waiting = True
        return
    if (
        blue_green.post_promotion_analysis
        and spec.analysis is not None
        and step < 3
        and not plan.promote_full
    ):
        plan.step, plan.weight = 2, 100  # switched; `modelship promote` (step 3) accepts it as it is
        gate = gates.analysis_gate(
            "postPromotion",
            plan.canary,
            None,
            "post-promotion",
            spec.analysis,
            plan.runs.get("postPromotion"),
            now,
        )
        if apply(plan, spec, gate, now) != "pass":
            return
    promote(plan, spec, template, now, "by switching the active Service")


def _gates_passed(plan: Plan, spec: api.ModelDeploymentSpec) -> bool:
    """The preview passed its smoke test and pre-promotion analysis (or has none)."""
    assert plan.canary is not None
    if not gates.smoke_passed(spec.smoke_test, plan.canary, plan.smoke):
        return False
    run = plan.runs.get("prePromotion")
    pre = spec.strategy.blue_green is not None and spec.strategy.blue_green.pre_promotion_analysis
    return not pre or (run is not None and run.revision == plan.canary and run.phase == "Successful")
