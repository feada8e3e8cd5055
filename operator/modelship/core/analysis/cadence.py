"""When to look at a run's data: at the analysis interval, and at the scrape cadence while it matters.

Prometheus has new data once per scrape. A run looks at that cadence (a *probe*) while:
- it is in its first window (`runs.window`): the revision just got new traffic, the moment a bad
  canary hurts most; or
- a metric's latest value is near its limit (within `NEAR` of it, or beyond it but not yet
  beyond doubt).
A probe counts only when it fails a metric beyond doubt (`stats`): fast failing never means fast
promoting, a success still needs its `count` regular measurements at `interval`. Web metrics
(`provider: web`) have no scrapes: they alone never make a run probe.

Probes are timed to land just after a scrape (`Scrape.last` + k * interval + its duration + a
margin), so a failure is seen one query after the data shows it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelship import api
from modelship.core.analysis import runs, stats

NEAR = 0.2  # a value within 20% of a bound is near it
MARGIN = timedelta(milliseconds=100)  # after a scrape ends, before its samples are queried
# A new revision's pods reach Prometheus' targets a moment after they start: while a run in its
# first window has no scrape timing yet, ask again this soon rather than at the interval.
RETRY = timedelta(seconds=1)


@dataclass(frozen=True)
class Scrape:
    """How often Prometheus scrapes the revision's pods, and when it last did (target metadata)."""

    interval: timedelta
    last: datetime | None = None  # the start of the last scrape
    duration: timedelta = timedelta(0)  # how long that scrape took
    # The pass's own time to the microsecond (its `now` is whole seconds): a probe scheduled from
    # `now` alone could land in the past and pass again at once, over and over.
    seen_at: datetime | None = None


def cadence(analysis: api.Analysis, scrape: Scrape | None) -> timedelta:
    """The shortest time between two looks that can see different data."""
    if analysis.scrape_interval:
        return api.parse_duration(analysis.scrape_interval)
    if scrape is not None and scrape.interval > timedelta(0):
        return scrape.interval
    return api.parse_duration(analysis.interval)


def _near(metric: api.Metric, value: float) -> bool:
    if metric.max is not None and value >= metric.max * (1 - NEAR):
        return True
    return metric.min is not None and value <= metric.min * (1 + NEAR)


def _scraped(analysis: api.Analysis) -> dict[str, api.Metric]:
    """The judged metrics that read Prometheus, whose data changes at the scrape cadence, by name."""
    return {m.name: m for m in analysis.metrics if not m.dry_run and m.provider == "prometheus"}


def fast(run: api.AnalysisRun, analysis: api.Analysis, now: datetime, scrape: Scrape | None) -> bool:
    """Whether the run probes at the scrape cadence now."""
    judged = _scraped(analysis)
    if (
        not judged
        or run.phase != "Running"
        or cadence(analysis, scrape) >= api.parse_duration(analysis.interval)
    ):
        return False
    if _first_window(run, analysis, now):
        return True
    for status in run.metrics:
        metric = judged.get(status.name)
        last = status.measurements[-1] if status.measurements else None
        if metric is not None and last is not None and last.value is not None and _near(metric, last.value):
            return True
    return False


def _landed(
    analysis: api.Analysis, scrape: Scrape | None, now: datetime
) -> tuple[datetime, timedelta] | None:
    """When the newest scrape's samples became queryable (at or before `now`), and the cadence."""
    every = cadence(analysis, scrape)
    if scrape is None or scrape.last is None:
        return None
    landed = scrape.last + scrape.duration + MARGIN
    return landed + math.floor((now - landed) / every) * every, every


def _data_at(analysis: api.Analysis, scrape: Scrape | None, now: datetime) -> tuple[datetime, timedelta]:
    """The moment of the samples a look at `now` reads, and the cadence."""
    landed = _landed(analysis, scrape, now)
    return landed if landed is not None else (now, cadence(analysis, scrape))


def with_data(
    run: api.AnalysisRun,
    analysis: api.Analysis,
    scrape: Scrape | None,
    tallies: Iterable[stats.Tally | None],
    now: datetime,
) -> api.AnalysisRun:
    """The run, with `data_since` set at its first look whose tallies hold requests. Looks before
    it could fail nothing (no requests, no doubt), so they need no share of the budget."""
    if run.data_since is not None or not any(t is not None and t.requests > 0 for t in tallies):
        return run
    return run.model_copy(update={"data_since": _data_at(analysis, scrape, now)[0]})


def alpha(run: api.AnalysisRun, analysis: api.Analysis, scrape: Scrape | None, now: datetime) -> float:
    """The level at which a rate metric fails at this look (`stats`): the look's
    slot is the scrape whose samples it reads (looks between two scrapes read the same samples,
    so they spend one share), counted from the run's first data (`with_data`), else its start."""
    data_at, every = _data_at(analysis, scrape, now)
    slot = stats.slot(run.data_since or run.started_at, data_at, every)
    return stats.alpha_for(1 - analysis.confidence, slot)


def _first_window(run: api.AnalysisRun, analysis: api.Analysis, now: datetime) -> bool:
    return now < run.started_at + api.parse_duration(runs.window(analysis))


def next_look(analysis: api.Analysis, scrape: Scrape | None, now: datetime) -> datetime:
    """When the next scrape's samples can be queried: just after it, if its timing is known."""
    if scrape is not None and scrape.seen_at is not None:
        now = max(now, scrape.seen_at)
    landed = _landed(analysis, scrape, now)
    if landed is None:
        return now + cadence(analysis, scrape)
    return landed[0] + landed[1]


def wake(
    run: api.AnalysisRun, analysis: api.Analysis, scrape: Scrape | None, now: datetime
) -> datetime | None:
    """When the run wants a pass sooner than its interval: the next probe, or (in its first
    window, with no scrape timing known yet) another read of the timing."""
    if fast(run, analysis, now, scrape):
        return next_look(analysis, scrape, now)
    unknown = scrape is None and analysis.scrape_interval is None and bool(_scraped(analysis))
    if unknown and run.phase == "Running" and _first_window(run, analysis, now):
        return now + RETRY
    return None
