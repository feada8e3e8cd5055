"""Analysis runs, pure: when the next measurement is due, and what the measurements add up to.

A run (`status.analysis[]`, one per kind) belongs to one revision: an `analysis` canary step,
the background analysis, or a blue/green gate. Every `interval` (the first one after
`initialDelay`) each metric is measured and judged (`verdicts.judge`); the tallies decide:

- Failed: a metric has more than `failureLimit` failed measurements;
- Error: a metric has more than `consecutiveErrorLimit` errors in a row;
- Inconclusive: a metric has more than `inconclusiveLimit` inconclusive measurements in a row;
  the run stops measuring and waits for a person;
- Unreachable: Prometheus has not answered for `unreachableTimeout`, from the first round of the
  outage (`unreachable_since`); the rollout rolls back. Not seeing is not the canary's fault, so an
  unreachable measurement leaves the in-a-row tallies as they were, and while the outage is
  shorter the run goes on (no round with an unreachable metric succeeds);
- Successful: every metric has `count` successful measurements (never, for background runs,
  which measure until the canary is promoted);
- otherwise Running. `dryRun` metrics are measured and shown but never decide.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from modelship import api
from modelship.core.analysis.verdicts import RawMeasurement, judge

KEEP = 10  # measurements kept per metric in the status
MIN_WINDOW = timedelta(seconds=60)  # several scrapes even at the common 15s interval


def window(analysis: api.Analysis) -> str:
    """The range of the builtin templates' rate(): `window`, else the interval but at least 1m."""
    if analysis.window:
        return analysis.window
    seconds = max(api.parse_duration(analysis.interval), MIN_WINDOW).total_seconds()
    return f"{int(seconds)}s"


def judged(analysis: api.Analysis) -> set[str]:
    """The metrics that decide a run (every one but the `dryRun` ones), by name."""
    return {m.name for m in analysis.metrics if not m.dry_run}


def start(
    kind: api.RunKind, revision: str, step: int | None, analysis: api.Analysis, now: datetime
) -> api.AnalysisRun:
    return api.AnalysisRun(
        kind=kind,
        revision=revision,
        step=step,
        started_at=now,
        message=f"first measurement at {_next(now, None, analysis):%H:%M:%SZ}",
        metrics=[api.MetricStatus(name=m.name) for m in analysis.metrics],
    )


def _next(started: datetime, last: datetime | None, analysis: api.Analysis) -> datetime:
    interval = api.parse_duration(analysis.interval)
    if last is None:
        return started + api.parse_duration(analysis.initial_delay) + interval
    return last + interval


def next_at(run: api.AnalysisRun, analysis: api.Analysis) -> datetime | None:
    """When the run measures next; None once it has ended."""
    if run.phase != "Running":
        return None
    return _next(run.started_at, run.last_measured_at, analysis)


def due(run: api.AnalysisRun, analysis: api.Analysis, now: datetime) -> bool:
    at = next_at(run, analysis)
    return at is not None and now >= at


def record(
    run: api.AnalysisRun,
    analysis: api.Analysis,
    measured: Mapping[str, RawMeasurement],
    now: datetime,
    alpha: float | None = None,
) -> api.AnalysisRun:
    """The run after one round of measurements (one per metric), judged and tallied; `alpha`: the
    level at which a rate metric fails (`cadence.alpha`)."""
    old = {m.name: m for m in run.metrics}
    decide = judged(analysis)
    metrics = []
    blind: list[str] = []  # why Prometheus did not answer, per judged metric it did not answer for
    for metric in analysis.metrics:
        raw = measured.get(metric.name, RawMeasurement(unreachable="no query was made"))
        verdict, message = judge(metric, analysis, raw, alpha)
        before = old.get(metric.name, api.MetricStatus(name=metric.name))
        measurement = api.Measurement(
            verdict=verdict, value=raw.value, stable_value=raw.stable_value, message=message, measured_at=now
        )
        seen = raw.unreachable is None
        if raw.unreachable is not None and metric.name in decide:
            blind.append(raw.unreachable)
        metrics.append(
            before.model_copy(
                update={
                    "successful": before.successful + (verdict == "Successful"),
                    "failed": before.failed + (verdict == "Failed"),
                    "inconclusive": before.inconclusive + (verdict == "Inconclusive"),
                    "errors": before.errors + (verdict == "Error"),
                    "consecutive_inconclusive": _streak(
                        before.consecutive_inconclusive, verdict == "Inconclusive", seen
                    ),
                    "consecutive_errors": _streak(before.consecutive_errors, verdict == "Error", seen),
                    "measurements": [*before.measurements, measurement][-KEEP:],
                }
            )
        )
    since = (run.unreachable_since or now) if blind else None
    updated = run.model_copy(update={"metrics": metrics, "last_measured_at": now, "unreachable_since": since})
    phase, message = outcome(updated, analysis)
    if blind and phase in ("Running", "Successful"):
        phase, message = _unreachable(updated, analysis, blind[0], now)
    if phase == "Running":
        message += f"; next measurement at {_next(run.started_at, now, analysis):%H:%M:%SZ}"
    return updated.model_copy(update={"phase": phase, "message": message[:1024]})


def _streak(count: int, extends: bool, seen: bool) -> int:
    """An in-a-row tally after one measurement. One that did not see the revision (Prometheus
    unreachable) leaves it as it was: not seeing is not the revision's fault, and an outage is
    bounded by `unreachableTimeout`, not by `inconclusiveLimit`."""
    if not seen:
        return count
    return count + 1 if extends else 0


def _unreachable(run: api.AnalysisRun, analysis: api.Analysis, why: str, now: datetime) -> tuple[str, str]:
    """(phase, message) of a run in a round Prometheus did not answer (`why`): Unreachable once
    the outage has lasted `unreachableTimeout`, else Running (never Successful: it was not seen)."""
    since = run.unreachable_since or now
    limit = api.parse_duration(analysis.unreachable_timeout)
    if now - since >= limit:
        return "Unreachable", (
            f"Prometheus unreachable for {api.format_duration(now - since)} (unreachableTimeout "
            f"{analysis.unreachable_timeout}): {why}"
        )
    return "Running", (
        f"Prometheus unreachable since {since:%H:%M:%SZ}: {why}; continues when it answers, rolls back "
        f"if it is still unreachable at {since + limit:%H:%M:%SZ} (unreachableTimeout "
        f"{analysis.unreachable_timeout})"
    )


def _latest(status: api.MetricStatus) -> str:
    return status.measurements[-1].message if status.measurements else f"{status.name}: not measured yet"


def outcome(run: api.AnalysisRun, analysis: api.Analysis) -> tuple[str, str]:
    """(phase, message) of a run from its tallies; the message names the deciding metric."""
    decide = judged(analysis)
    tallies = [m for m in run.metrics if m.name in decide]
    for m in tallies:
        if m.failed > analysis.failure_limit:
            return (
                "Failed",
                f"{_latest_of(m, 'Failed')} ({m.failed} failed, failureLimit {analysis.failure_limit})",
            )
    for m in tallies:
        if m.consecutive_errors > analysis.consecutive_error_limit:
            return "Error", (
                f"{_latest(m)} ({m.consecutive_errors} errors in a row, consecutiveErrorLimit "
                f"{analysis.consecutive_error_limit})"
            )
    for m in tallies:
        if m.consecutive_inconclusive > analysis.inconclusive_limit:
            return "Inconclusive", (
                f"{_latest(m)} ({m.consecutive_inconclusive} inconclusive in a row, inconclusiveLimit "
                f"{analysis.inconclusive_limit})"
            )
    done = min((m.successful for m in tallies), default=analysis.count)
    rounds = max((len(m.measurements) for m in run.metrics), default=0)
    if run.kind != "background" and done >= analysis.count and rounds >= min(analysis.count, KEEP):
        return "Successful", f"every metric passed {analysis.count} measurement(s)"
    latest = "; ".join(_latest(m) for m in run.metrics)
    progress = f"{done}/{analysis.count} successful" if run.kind != "background" else "background"
    return "Running", f"{progress}; {latest}"


def _latest_of(status: api.MetricStatus, verdict: str) -> str:
    """The message of the newest measurement with `verdict` (the one that tipped the tally)."""
    found = [m.message for m in status.measurements if m.verdict == verdict]
    return found[-1] if found else _latest(status)


def inconclusive_now(run: api.AnalysisRun, analysis: api.Analysis) -> str | None:
    """While a run continues: the message of a metric whose latest measurement was inconclusive
    or an error (the rollout waits, paused, until a round is conclusive again)."""
    decide = judged(analysis)
    for m in run.metrics:
        if m.name in decide and m.measurements and m.measurements[-1].verdict in ("Inconclusive", "Error"):
            return m.measurements[-1].message
    return None
