"""The blue/green strategy: a preview behind `<name>-preview` with no traffic, its gates, then
the switch in one move.
"""

from __future__ import annotations

from datetime import datetime

from modelship import api
from modelship.core import gates
from modelship.core.engine import routing
from modelship.core.engine.accelerator import make_room
from modelship.core.engine.model import SWITCHED, Event, Observations, Plan, ready
from modelship.core.engine.moves import apply, promote


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
    post-promotion analysis the switch comes first (phase Switched, the old revision still
    up) and the pointers move only when it passes; failure switches back.

    On devices in replace mode (`accelerator.rollout: auto` with too few free devices) the
    preview takes devices from the serving colour down to `minAvailable`, the switch happens
    with as many pods as it could get, and the new colour takes the rest of the old one's
    devices after the switch (once no post-promotion analysis can switch back)."""
    assert plan.canary is not None and spec.strategy.blue_green is not None
    blue_green = spec.strategy.blue_green
    observed = observations.deployments.get(plan.canary)
    phase = plan.phase or "Preview"
    # Once switched, the new colour serves: it keeps every replica (even while paused).
    wanted = spec.replicas if phase in SWITCHED else blue_green.preview_replicas or spec.replicas
    plan.weight, plan.canary_replicas = 100 if phase in SWITCHED else 0, wanted
    size = _fit(plan, spec, observations, switched=False)
    if spec.paused:
        plan.paused = ("PausedBySpec", "spec.paused is true; `modelship resume` continues")
        return
    if (
        phase not in SWITCHED
        and not plan.promote_full
        and not (phase == "Promoted" and _gates_passed(plan, spec))
    ):
        if size is None or not ready(observed, size):
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
        if phase == "Preview" and (not blue_green.auto_promote or now < plan.pause_start + delay):
            until = (
                "`modelship promote` is run"
                if not blue_green.auto_promote
                else f"{plan.pause_start + delay:%H:%M:%SZ}"
            )
            held = f" with {size} of {wanted} pods (the devices hold no more before the switch)"
            plan.paused = (
                "PreviewPause",
                f"preview {plan.canary} ready{held if size < wanted else ''}; traffic switches when {until}",
            )
            return
    phase = "Promoted" if phase == "Preview" else phase
    plan.phase, plan.pause_start, plan.canary_replicas = phase, None, spec.replicas
    judged = blue_green.post_promotion_analysis and phase != "Accepted" and not plan.promote_full
    post = spec.analysis if judged else None  # the post-promotion analysis still to pass
    if phase not in SWITCHED:
        size = _fit(plan, spec, observations, switched=False)
        if size is None or not ready(observed, size):
            plan.promote_waiting = True
            return
        if size < spec.replicas or post is not None:
            phase = "Switched"  # switch now; the analysis, or the rest of the devices, comes after
    if phase in SWITCHED:
        # `<name>` selects the new colour. `modelship promote` (phase Accepted) accepts a
        # post-promotion analysis as it is.
        plan.phase, plan.weight = phase, 100
    if phase in SWITCHED and not routing.verified(observations, 100):
        plan.waiting = f"switched: {routing.waiting(observations, 100)}"
        return
    if post is not None and phase == "Switched":
        _fit(plan, spec, observations, switched=False)  # the old colour keeps pods to switch back to
        gate = gates.analysis_gate(
            "postPromotion",
            plan.canary,
            None,
            "post-promotion",
            post,
            plan.runs.get("postPromotion"),
            now,
        )
        if apply(plan, spec, gate, now) != "pass":
            return
    if _fit(plan, spec, observations, switched=True) != spec.replicas or not ready(observed, spec.replicas):
        plan.promote_waiting = True
        return
    promote(plan, spec, template, now, "by switching the active Service")


def _fit(plan: Plan, spec: api.ModelDeploymentSpec, observations: Observations, switched: bool) -> int | None:
    """Make room on the devices for the replicas the plan asks for, and return the new colour's
    size once it has every pod it can get, or None while pods are still moving (or `surge`
    stops the rollout). Before the switch the serving colour keeps `minAvailable` pods, so the
    new colour may get fewer than asked; it must get at least as many to take over."""
    decided = make_room(plan, spec, observations, weight=100 if switched else 0)
    if decided is None or decided.blocked is None:
        moving = decided is not None and decided.mode == "replace"
        return None if moving else plan.canary_replicas
    if switched or decided.blocked[0] != "MinAvailable":
        return None
    floor = max((spec.accelerator.min_available if spec.accelerator else None) or 1, 1)
    if plan.canary_replicas >= floor:
        plan.device_blocked = None  # all it can get until the switch: that is the plan, not a stop
        return plan.canary_replicas
    plan.device_blocked = (
        "MinAvailable",
        f"before the switch the new colour can hold only {plan.canary_replicas} pod(s), fewer than "
        f"spec.accelerator.minAvailable={floor}, because the serving colour keeps {floor}: "
        f"{decided.blocked[1]}",
    )
    return None


def _gates_passed(plan: Plan, spec: api.ModelDeploymentSpec) -> bool:
    """The preview passed its smoke test and pre-promotion analysis (or has none)."""
    assert plan.canary is not None
    if not gates.smoke_passed(spec.smoke_test, plan.canary, plan.smoke):
        return False
    run = plan.runs.get("prePromotion")
    pre = spec.strategy.blue_green is not None and spec.strategy.blue_green.pre_promotion_analysis
    return not pre or (run is not None and run.revision == plan.canary and run.phase == "Successful")
