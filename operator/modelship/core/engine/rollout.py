"""One pass over a ModelDeployment that has a stable revision: record this pass's analysis
measurements (`measured`), then fill the plan: steady, a rollout in progress, or aborted (`roll`).
"""

from __future__ import annotations

from datetime import datetime

from modelship import api
from modelship.core.analysis import runs
from modelship.core.engine.accelerator import make_room
from modelship.core.engine.bluegreen import preview
from modelship.core.engine.canary import walk
from modelship.core.engine.model import Event, Observations, Plan, current, ready
from modelship.core.engine.moves import abort, promote


def measured(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> tuple[list[api.AnalysisRun] | None, list[Event]]:
    """The status's analysis runs with this pass's measurements recorded, and their events."""
    if not status.analysis or spec.analysis is None:
        return status.analysis, []
    out, events = [], []
    for run in status.analysis:
        measured = observations.measurements.get(run.kind)
        if measured is not None and run.phase == "Running":
            run = runs.record(run, spec.analysis, measured, now)
            verdicts = [m.measurements[-1] for m in run.metrics if m.measurements]
            bad = any(v.verdict in ("Failed", "Error") for v in verdicts)
            summary = "; ".join(v.message for v in verdicts)
            events.append(
                Event("Warning" if bad else "Normal", "AnalysisMeasured", f"{run.kind} analysis: {summary}")
            )
            if run.phase != "Running":
                events.append(
                    Event(
                        "Normal" if run.phase == "Successful" else "Warning",
                        f"Analysis{run.phase}",
                        f"{run.kind} analysis of revision {run.revision}: {run.message}",
                    )
                )
        out.append(run)
    return out, events


def roll(
    plan: Plan,
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> None:
    """Fill `plan` for a ModelDeployment with a stable revision: steady, canary or aborted."""
    plan.stable_replicas = spec.replicas
    aborted = status.aborted
    if aborted is not None:
        plan.aborted, plan.abort_reason, plan.abort_message = (
            aborted.revision,
            aborted.reason,
            aborted.message,
        )
        plan.abort_scale_down_at = aborted.scale_down_at
    plan.runs = {r.kind: r for r in status.analysis or []}
    plan.smoke = status.smoke_test
    plan.scale_down, plan.scale_down_at = status.scale_down_revision, status.scale_down_at
    plan.previous_template = status.previous_template
    canary = status.rolling
    steps = spec.strategy.steps if spec.strategy.canary else None

    if plan.target == plan.stable:
        plan.aborted = None
        if canary is not None:
            plan.rolled_back = True
            plan.events.append(
                Event(
                    "Warning",
                    "RolledBack",
                    f"spec reverted to the stable revision {plan.stable}: canary {canary} removed, "
                    "all traffic to stable",
                )
            )
    elif plan.aborted == plan.target:
        plan.mode = "aborted"
        if plan.abort_reason is None:  # `modelship abort`: the status names the revision, nothing else yet
            abort(
                plan, spec, now, "Aborted", f"rollout of revision {plan.target} aborted by `modelship abort`"
            )
    else:
        plan.mode, plan.aborted = "rolling", None
        if canary == plan.target and status.canary is not None:
            plan.step, plan.weight = status.canary.step, status.canary.weight
            plan.pause_start, plan.promote_full = status.canary.pause_start_time, status.canary.promote_full
        elif canary == plan.target and status.blue_green is not None:
            plan.phase, plan.pause_start = status.blue_green.phase, status.blue_green.ready_time
            plan.promote_full = status.blue_green.promote_full
        else:
            if canary is not None:
                plan.events.append(
                    Event(
                        "Warning",
                        "CanaryReplaced",
                        f"spec asks for revision {plan.target}: canary {canary} removed (its traffic back "
                        "to stable first); the rollout restarts from step 0",
                    )
                )
            how = f"in {len(steps)} canary steps" if steps is not None else "as a blue/green preview"
            plan.events.append(
                Event(
                    "Normal",
                    "RolloutStarted",
                    f"rolling out revision {plan.target} {how}; revision {plan.stable} stays stable",
                )
            )
            plan.weight = 0
            if steps is not None:
                plan.step = 0
            else:
                plan.phase = "Preview"
            plan.runs, plan.smoke = {}, None
        plan.canary = plan.target
        observed = observations.deployments.get(plan.target)
        if observed is not None and observed.deadline_exceeded and current(observed):
            abort(
                plan,
                spec,
                now,
                "ProgressDeadlineExceeded",
                f"canary {plan.target} made no progress within spec.progressDeadline "
                f"({spec.progress_deadline})",
                keep_pods=False,  # they never became ready: nothing to inspect that the Deployment lacks
            )
        elif (
            canary != plan.target
            and plan.target == status.scale_down_revision
            and ready(observed, spec.replicas)
        ):
            # Fast-track rollback: the previous stable revision is still up (within its
            # scaleDownDelay), so going back to it is one move, no steps and no new pods.
            promote(
                plan, spec, template, now, "back to the previous stable revision, whose pods were still up"
            )
        elif steps is None:
            preview(plan, spec, observations, now, template)
        else:
            walk(plan, spec, steps, observations, now, template)

    if plan.mode == "rolling" and plan.canary is not None and spec.strategy.canary is not None:
        make_room(plan, spec, observations)  # blue/green makes its own room (`bluegreen.preview`)
    if plan.mode != "rolling":
        plan.canary = plan.step = plan.phase = plan.weight = plan.pause_start = plan.promote_full = None
        # The background analysis of a promoted canary is over; other runs stay to be read.
        background = plan.runs.get("background")
        if plan.promoted and background is not None and background.phase == "Running":
            plan.runs["background"] = background.model_copy(
                update={"phase": "Successful", "message": "the canary was promoted"}
            )
    if plan.mode != "aborted":
        plan.abort_reason = plan.abort_message = plan.abort_scale_down_at = None
    if plan.scale_down is not None and (
        plan.scale_down in (plan.stable, plan.canary) or (plan.scale_down_at and now >= plan.scale_down_at)
    ):
        if plan.scale_down not in (plan.stable, plan.canary):
            plan.events.append(
                Event("Normal", "ScaledDown", f"previous stable revision {plan.scale_down} scaled down")
            )
        plan.scale_down = plan.scale_down_at = None
