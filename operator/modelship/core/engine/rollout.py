"""One pass over a ModelDeployment that has a stable revision: record this pass's analysis
measurements (`measured`), then its outcome: steady, a rollout in progress, or aborted (`advance`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from modelship import api
from modelship.core import evaluation, experiment
from modelship.core.analysis import cadence, runs
from modelship.core.engine import bluegreen, canary
from modelship.core.engine.model import Context, Event, Observations, Outcome, current, ready
from modelship.core.engine.moves import abort, promote


def measured(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> tuple[list[api.AnalysisRun] | None, list[Event]]:
    """The status's analysis runs with this pass's measurements recorded, and their events."""
    if not status.analysis:
        return status.analysis, []
    out, events = [], []
    for run in status.analysis:
        measured = observations.measurements.get(run.kind)
        analysis = evaluation.analysis_of(spec, run)
        trial = experiment.step_of(spec, run.step) if run.kind == experiment.KIND else None
        if measured is not None and run.phase == "Running" and analysis is not None and trial is not None:
            run = experiment.record(run, trial, analysis, measured, now)
            if run.phase != "Running":  # decided once: its end is the one Event (no per-look series)
                said = f"experiment of revision {run.revision}: {run.message}"
                kind: Literal["Normal", "Warning"] = "Normal" if run.phase == "Successful" else "Warning"
                events.append(Event(kind, f"Experiment{run.phase}", said))
        elif measured is not None and run.phase == "Running" and analysis is not None:
            tallies = (raw.tally for raw in measured.values())
            run = cadence.with_data(run, analysis, observations.scrape, tallies, now)
            alpha = cadence.alpha(run, analysis, observations.scrape, now)
            looked = runs.record(run, analysis, measured, now, alpha)
            if not runs.due(run, analysis, now) and not _failed(looked, analysis):
                out.append(run)  # a probe counts only when it fails a metric beyond doubt
                continue
            run = looked
            verdicts = [m.measurements[-1] for m in run.metrics if m.measurements]
            bad = any(v.verdict in ("Failed", "Error") for v in verdicts)
            # A round is a repeat, not a transition: one Event series per run, each round's values
            # are in status.analysis (the run's end is its own Event, below).
            what = "a metric failed or errored" if bad else "no metric failed"
            names = ", ".join(m.name for m in run.metrics)
            message = (
                f"{run.kind} analysis of revision {run.revision} measured {names}: {what} "
                "(each round's values: status.analysis)"
            )
            series = f"{run.kind}/{run.revision}"
            events.append(Event("Warning" if bad else "Normal", "AnalysisMeasured", message, series=series))
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


def _failed(run: api.AnalysisRun, analysis: api.Analysis) -> bool:
    """Whether the run's latest round failed a judged metric."""
    judged = runs.judged(analysis)
    return any(
        m.measurements[-1].verdict == "Failed" for m in run.metrics if m.name in judged and m.measurements
    )


def advance(ctx: Context, events: tuple[Event, ...]) -> Outcome:
    """The outcome for a ModelDeployment with a stable revision: steady, a rollout in progress
    (`canary.advance`, `bluegreen.advance`), or aborted. `events`: this pass's analysis events."""
    out = _carried(ctx).said(*events)
    if ctx.target == out.stable:
        out = _back_to_stable(ctx, out)
    elif out.aborted == ctx.target:
        out = out.but(mode="aborted")
        if out.abort_reason is None:  # `modelship abort`: the status names the revision, nothing else yet
            out = abort(out, ctx, "Aborted", f"rollout of revision {ctx.target} aborted by `modelship abort`")
    else:
        out = _rolling(ctx, out.but(mode="rolling", aborted=None))
    return _tidy(ctx, out)


def _carried(ctx: Context) -> Outcome:
    """What the status carries into this pass."""
    status, aborted = ctx.status, ctx.status.aborted
    assert status.stable_revision is not None and status.stable_template is not None
    return Outcome(
        status.stable_revision,
        status.stable_template,
        stable_replicas=ctx.spec.replicas,
        aborted=aborted.revision if aborted else None,
        abort_reason=aborted.reason if aborted else None,
        abort_message=aborted.message if aborted else None,
        abort_scale_down_at=aborted.scale_down_at if aborted else None,
        runs={r.kind: r for r in status.analysis or []},
        smoke=status.smoke_test,
        scale_down=status.scale_down_revision,
        scale_down_at=status.scale_down_at,
        previous_template=status.previous_template,
    )


def _back_to_stable(ctx: Context, out: Outcome) -> Outcome:
    """The spec asks for the stable revision: steady, or (mid-rollout) an immediate rollback."""
    # A rollback is remembered (status.rollout.rolledBack) until the next rollout.
    remembered = ctx.status.rolled_back
    out = out.but(aborted=None, rolled_back=remembered.revision if remembered else None)
    rolling = ctx.status.rolling
    if rolling is None:
        return out
    message = (
        f"spec reverted to the stable revision {out.stable}: canary {rolling} removed, all traffic to stable"
    )
    return out.but(rolled_back=rolling).said(Event("Warning", "RolledBack", message))


def _rolling(ctx: Context, out: Outcome) -> Outcome:
    """The spec asks for a new revision: carry on with its rollout, or start one."""
    spec, status, target = ctx.spec, ctx.status, ctx.target
    rolling = status.rolling
    if rolling == target and status.canary is not None:
        walking = status.canary
        out = out.but(
            step=walking.step,
            weight=walking.weight,
            pause_start=walking.pause_start_time,
            promote_full=walking.promote_full,
            header_routes=tuple(walking.header_routes or ()),
            shadow_percent=walking.shadow_percent,
            challenger=walking.challenger.revision if walking.challenger else None,
            challenger_weight=walking.challenger.weight if walking.challenger else 0,
        )
    elif rolling == target and status.blue_green is not None:
        blue_green = status.blue_green
        out = out.but(
            phase=blue_green.phase,
            weight=0,
            pause_start=blue_green.ready_time,
            promote_full=blue_green.promote_full,
        )
    else:
        out = _started(ctx, out)
    out = out.but(canary=target)
    observed = ctx.observed(target)
    if observed is not None and observed.deadline_exceeded and current(observed):
        message = f"canary {target} made no progress within spec.progressDeadline ({spec.progress_deadline})"
        # They never became ready: nothing to inspect that the Deployment lacks.
        return abort(out, ctx, "ProgressDeadlineExceeded", message, keep_pods=False)
    if observed is not None and observed.model_failure is not None and current(observed):
        # It can never become ready: the artifact is not the one spec.model.sha256 approves.
        message = f"revision {target}: {observed.model_failure}"
        return abort(out, ctx, "ModelChecksumMismatch", message, keep_pods=False)
    if rolling != target and target == status.scale_down_revision and ready(observed, spec.replicas):
        # Fast-track rollback: the previous stable revision is still up (within its
        # scaleDownDelay), so going back to it is one move, no steps and no new pods.
        return promote(out, ctx, "back to the previous stable revision, whose pods were still up")
    if spec.strategy.canary is None:
        return bluegreen.advance(ctx, out)
    return canary.advance(ctx, out)


def _started(ctx: Context, out: Outcome) -> Outcome:
    """A new rollout of the spec's revision, from its first step (or preview)."""
    rolling, steps = ctx.status.rolling, ctx.spec.strategy.canary
    if rolling is not None:
        message = (
            f"spec asks for revision {ctx.target}: canary {rolling} removed (its traffic back to stable "
            "first); the rollout restarts from step 0"
        )
        out = out.said(Event("Warning", "CanaryReplaced", message))
    how = f"in {len(steps.steps)} canary steps" if steps is not None else "as a blue/green preview"
    message = f"rolling out revision {ctx.target} {how}; revision {out.stable} stays stable"
    out = out.said(Event("Normal", "RolloutStarted", message))
    fresh = {"step": 0} if steps is not None else {"phase": "Preview"}
    return out.but(
        weight=0,
        header_routes=(),
        shadow_percent=None,
        challenger=None,
        challenger_weight=0,
        runs={},
        smoke=None,
        **fresh,
    )


def _tidy(ctx: Context, out: Outcome) -> Outcome:
    """What a pass's mode leaves behind: no rollout fields outside a rollout, no abort fields outside
    an abort, the previous stable revision gone once its delay is over."""
    if out.mode != "rolling":
        runs = dict(out.runs)
        # The background analysis of a promoted canary is over; other runs stay to be read.
        background = runs.get("background")
        if out.promoted and background is not None and background.phase == "Running":
            runs["background"] = background.model_copy(
                update={"phase": "Successful", "message": "the canary was promoted"}
            )
        out = out.but(
            canary=None,
            step=None,
            phase=None,
            weight=None,
            header_routes=(),  # promoted, aborted, rolled back: the candidate is no longer pinned
            shadow_percent=None,  # ... nor shadowed
            challenger=None,  # an experiment's challenger goes (`status.finish` drains it)
            challenger_weight=0,
            pause_start=None,
            promote_full=None,
            runs=runs,
        )
    if out.mode != "aborted":
        out = out.but(abort_reason=None, abort_message=None, abort_scale_down_at=None)
    gone = out.scale_down is not None and (
        out.scale_down in (out.stable, out.canary)
        or (out.scale_down_at is not None and ctx.now >= out.scale_down_at)
    )
    if not gone:
        return out
    if out.scale_down not in (out.stable, out.canary):
        out = out.said(
            Event("Normal", "ScaledDown", f"previous stable revision {out.scale_down} scaled down")
        )
    return out.but(scale_down=None, scale_down_at=None)
