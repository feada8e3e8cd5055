"""The blue/green strategy: a preview behind `<name>-preview` with no traffic, its gates, then
the switch in one move.

The new revision runs behind `<name>-preview` with no traffic (phase Preview). Once ready it must
pass the smoke test and the pre-promotion analysis (with `prePromotionLoadTest`, judged on the
requests of a load test that starts first, `modelship.core.loadtest`); then a promotion
(manual, or automatic after `autoPromotionDelay`; phase Promoted) scales it up and swaps the selectors. With a
post-promotion analysis the switch comes first (phase Switched, the old revision still up) and
the pointers move only when it passes; failure switches back. A switch through a gatewayAPI
route counts once the route shows it.

On devices in replace mode (`accelerator.rollout: auto` with too few free devices) the preview
takes devices from the serving colour down to `minAvailable`, the switch happens with as many
pods as it could get, and the new colour takes the rest of the old one's devices after the
switch (once no post-promotion analysis can switch back).
"""

from __future__ import annotations

from modelship import api
from modelship.core import gates, loadtest
from modelship.core.engine import routing
from modelship.core.engine.accelerator import make_room
from modelship.core.engine.model import SWITCHED, Context, Event, Outcome, pause_of, ready
from modelship.core.engine.moves import abort, apply, promote


def advance(ctx: Context, out: Outcome) -> Outcome:
    """The blue/green rollout's outcome for this pass."""
    assert out.canary is not None and ctx.spec.strategy.blue_green is not None
    spec, blue_green = ctx.spec, ctx.spec.strategy.blue_green
    phase = out.phase or "Preview"
    # Once switched, the new colour serves: it keeps every replica (even while paused).
    wanted = spec.replicas if phase in SWITCHED else blue_green.preview_replicas or spec.replicas
    out, size = _fit(ctx, out.but(weight=100 if phase in SWITCHED else 0, canary_replicas=wanted), False)
    pause = pause_of(ctx)
    if pause is not None:
        return out.but(paused=pause)
    promoted = phase == "Promoted" and _gates_passed(ctx, out)
    if phase not in SWITCHED and not out.promote_full and not promoted:
        if size is None or not ready(ctx.observed(out.canary), size):
            return out
        out, held = _preview_gates(ctx, out, phase, size, wanted)
        if held:
            return out
    return _switch(ctx, out.but(phase="Promoted" if phase == "Preview" else phase, pause_start=None))


def _preview_gates(
    ctx: Context, out: Outcome, phase: api.BlueGreenPhase, size: int, wanted: int
) -> tuple[Outcome, bool]:
    """The ready preview's gates: the smoke test, the pre-promotion analysis, the promotion itself
    (manual, or `autoPromote` after its delay). Returns the outcome and whether it holds."""
    assert ctx.spec.strategy.blue_green is not None
    spec, blue_green = ctx.spec, ctx.spec.strategy.blue_green
    ready_at = out.pause_start
    if ready_at is None:
        ready_at = ctx.now
        message = f"preview {ctx.target} is ready behind {ctx.observations.owner.name}-preview"
        out = out.but(pause_start=ready_at).said(Event("Normal", "PreviewReady", message))
    if spec.smoke_test is not None:
        gate = gates.smoke_gate(spec.smoke_test, ctx.target, out.smoke, ctx.observations.smoke, ctx.now)
        out, state = apply(out, ctx, gate)
        if state != "pass":
            return out, True
    load = blue_green.pre_promotion_load_test
    if load is not None and not loadtest.pre_promotion_passed(list(out.runs.values()), ctx.target):
        # The analysis judges the load's requests: it starts once the load runs.
        name = loadtest.job_name(ctx.observations.owner, ctx.target, loadtest.PRE_PROMOTION, ready_at)
        found = loadtest.state(ctx.observations.jobs.get(name), ready_at, ctx.now, load)
        if found.phase == "failed":
            return abort(out, ctx, loadtest.FAILED, f"pre-promotion load test: {found.message}"), True
        if found.phase == "starting":
            return out.but(waiting=f"pre-promotion load test Job {name} is starting", recheck=True), True
    if blue_green.pre_promotion_analysis and spec.analysis is not None:
        run = out.runs.get("prePromotion")
        gate = gates.analysis_gate(
            "prePromotion", ctx.target, None, "pre-promotion", spec.analysis, run, ctx.now
        )
        out, state = apply(out, ctx, gate)
        if state != "pass":
            return out, True
    delay = api.parse_duration(blue_green.auto_promotion_delay or "0s")
    if phase == "Preview" and (not blue_green.auto_promote or ctx.now < ready_at + delay):
        until = (
            "`modelship promote` is run" if not blue_green.auto_promote else f"{ready_at + delay:%H:%M:%SZ}"
        )
        held = f" with {size} of {wanted} pods (the devices hold no more before the switch)"
        message = f"preview {ctx.target} ready{held if size < wanted else ''}; traffic switches when {until}"
        return out.but(paused=("PreviewPause", message)), True
    return out, False


def _switch(ctx: Context, out: Outcome) -> Outcome:
    """Promoted: the new colour scales up and takes over; with a post-promotion analysis (or devices
    still moving) `<name>` switches first and the pointers move once that is over."""
    assert out.phase is not None and ctx.spec.strategy.blue_green is not None
    spec, phase = ctx.spec, out.phase
    observed = ctx.observed(out.canary)
    out = out.but(canary_replicas=spec.replicas)
    judged = (
        ctx.spec.strategy.blue_green.post_promotion_analysis and phase != "Accepted" and not out.promote_full
    )
    post = spec.analysis if judged else None  # the post-promotion analysis still to pass
    if phase not in SWITCHED:
        out, size = _fit(ctx, out, False)
        if size is None or not ready(observed, size):
            return out.but(promote_waiting=True)
        assert out.canary is not None
        unserved = routing.unserved(ctx.observations, 100, out.stable, out.canary, size)
        if unserved is not None:
            return out.but(promote_waiting=True, waiting=unserved)
        if size < spec.replicas or post is not None:
            phase = "Switched"  # switch now; the analysis, or the rest of the devices, comes after
    if phase in SWITCHED:
        # `<name>` selects the new colour. `modelship promote` (phase Accepted) accepts a
        # post-promotion analysis as it is.
        out = out.but(phase=phase, weight=100)
        kept = routing.sessions(spec, ctx.observations.owner.name, 100, out.stable, out.canary)
        if not routing.verified(ctx.observations, 100, kept):
            return out.but(waiting=f"switched: {routing.waiting(ctx.observations, 100, kept)}")
    if post is not None and phase == "Switched":
        out, _ = _fit(ctx, out, False)  # the old colour keeps pods to switch back to
        run = out.runs.get("postPromotion")
        gate = gates.analysis_gate(
            "postPromotion", out.canary or "", None, "post-promotion", post, run, ctx.now
        )
        out, state = apply(out, ctx, gate)
        if state != "pass":
            return out
    out, size = _fit(ctx, out, True)
    if size != spec.replicas or not ready(observed, spec.replicas):
        return out.but(promote_waiting=True)
    return promote(out, ctx, "by switching the active Service")


def _fit(ctx: Context, out: Outcome, switched: bool) -> tuple[Outcome, int | None]:
    """Make room on the devices for the replicas the outcome asks for, and say the new colour's
    size once it has every pod it can get, or None while pods are still moving (or `surge`
    stops the rollout). Before the switch the serving colour keeps `minAvailable` pods, so the
    new colour may get fewer than asked; it must get at least as many to take over."""
    out, decided = make_room(ctx, out, weight=100 if switched else 0)
    if decided is None or decided.blocked is None:
        moving = decided is not None and decided.mode == "replace"
        return out, None if moving else out.canary_replicas
    if switched or decided.blocked[0] != "MinAvailable":
        return out, None
    accelerator = ctx.spec.accelerator
    floor = max((accelerator.min_available if accelerator else None) or 1, 1)
    if out.canary_replicas >= floor:
        # All it can get until the switch: that is the plan, not a stop.
        return out.but(device_blocked=None), out.canary_replicas
    blocked = (
        "MinAvailable",
        f"before the switch the new colour can hold only {out.canary_replicas} pod(s), fewer than "
        f"spec.accelerator.minAvailable={floor}, because the serving colour keeps {floor}: "
        f"{decided.blocked[1]}",
    )
    return out.but(device_blocked=blocked), None


def _gates_passed(ctx: Context, out: Outcome) -> bool:
    """The preview passed its smoke test and pre-promotion analysis (or has none)."""
    assert out.canary is not None and ctx.spec.strategy.blue_green is not None
    if not gates.smoke_passed(ctx.spec.smoke_test, out.canary, out.smoke):
        return False
    run = out.runs.get("prePromotion")
    pre = ctx.spec.strategy.blue_green.pre_promotion_analysis
    return not pre or (run is not None and run.revision == out.canary and run.phase == "Successful")
