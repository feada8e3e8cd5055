"""How one measurement of one metric is judged: pure rules, no I/O.

The order matters and is documented in docs/analysis.md:
1. Prometheus could not be reached (or timed out): Inconclusive; nothing is known. Such a
   measurement is not the revision's fault: `runs` bounds an outage by `unreachableTimeout`,
   and it never counts toward `inconclusiveLimit`.
2. Prometheus refused the query (bad PromQL, several series): Error; the analysis itself is
   wrong, and after `consecutiveErrorLimit` of them the rollout is aborted. A job metric's Job
   that exited non-zero: Failed; one that exited 0 passes a metric with no limits.
3. Too little traffic (`minRequests`) or no value: the `noData` policy decides.
4. Outside `min`/`max`: Failed. A rate metric (error-rate, accuracy, a latency quantile) with a
   tally fails only beyond doubt (`stats`: the exact binomial test at the look's `alpha`); outside
   the limit but not beyond doubt is Inconclusive: too few requests to tell.
5. Further from the stable revision than `maxIncreaseVsStable`/`maxDropVsStable`: Failed
   (and with no stable value to compare against, `noData` decides).
6. Otherwise Successful.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelship import api
from modelship.core.analysis import abtest, stats, templates


@dataclass(frozen=True)
class RawMeasurement:
    """What the shell read for one metric at one moment (from Prometheus, or a web endpoint)."""

    value: float | None = None
    stable_value: float | None = None  # the same query for the stable revision, when compared
    requests: float | None = None  # requests the revision answered in the window (minRequests)
    error: str | None = None  # Prometheus answered with an error
    unreachable: str | None = None  # Prometheus did not answer
    tally: stats.Tally | None = None  # a rate metric's events and requests (templates.tally_rule)
    missing: str | None = None  # why there is no value, when the shell can say (a web metric's path)
    failed: str | None = None  # the check itself failed the revision: a Job that exited non-zero
    sample: abtest.Sample | None = None  # an experiment's counts of both revisions (`core.experiment`)


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _no_data(policy: str, why: str) -> tuple[api.Verdict, str]:
    if policy == "fail":
        return "Failed", f"{why} (noData: fail)"
    if policy == "pass":
        return "Successful", f"{why} (noData: pass)"
    return "Inconclusive", f"{why} (noData: inconclusive)"


DEFAULT_MIN_REQUESTS = 50  # the floor of metrics that have no statistics of their own


def floor(metric: api.Metric, analysis: api.Analysis) -> int:
    """The requests `metric` needs in the window to be judged: `minRequests` when set; otherwise
    none for a rate metric (its statistics say when there is enough), 50 for the others. A web
    metric has none: its endpoint answers for itself, and counting requests would need Prometheus;
    nor has a job metric (its Job answers for itself)."""
    if metric.provider in ("web", "job"):
        return 0
    if analysis.min_requests is not None:
        return analysis.min_requests
    rate = templates.tally_rule(metric.template, metric.max, metric.min) is not None
    return 0 if rate else DEFAULT_MIN_REQUESTS


def judge(
    metric: api.Metric, analysis: api.Analysis, raw: RawMeasurement, alpha: float | None = None
) -> tuple[api.Verdict, str]:
    """The verdict of one measurement and a message naming the metric, value and threshold.
    `alpha`: the level at which a rate metric's tally fails at this look (`cadence.alpha`; None:
    the run's own, 1 - confidence)."""
    alpha = 1 - analysis.confidence if alpha is None else alpha
    name = metric.name
    if raw.unreachable is not None:
        return "Inconclusive", f"{name}: not measured: {raw.unreachable}"
    if raw.error is not None:
        if metric.provider == "job":  # no query: the error says what of the Job went wrong
            return "Error", f"{name}: {raw.error}"
        return "Error", f"{name}: query failed: {raw.error}"
    if raw.failed is not None:
        return "Failed", f"{name}: {raw.failed}"
    if metric.provider == "job" and metric.min is None and metric.max is None:
        return "Successful", f"{name}: the Job succeeded"  # no limits: its exit code decides
    least = floor(metric, analysis)
    if least > 0 and (raw.requests or 0) < least:
        seen = int(raw.requests or 0)
        return _no_data(
            analysis.no_data, f"{name}: {seen} requests in the window, fewer than minRequests {least}"
        )
    rule = templates.tally_rule(metric.template, metric.max, metric.min)
    if rule is not None and least == 0 and analysis.min_requests is None and not _counted(raw):
        # A rate with no request count has nothing to be sure of: its value alone must not decide.
        return _no_data(analysis.no_data, f"{name}: 0 requests in the window")
    value = raw.value
    if value is None and rule is not None and rule.proportion and raw.tally is not None:
        value = raw.tally.rate  # the same proportion, from one sample (`templates._counted`)
    if value is None:
        return _no_data(analysis.no_data, f"{name}: no data" + (f": {raw.missing}" if raw.missing else ""))
    outside = None
    if metric.max is not None and value > metric.max:
        outside = f"{name} = {_fmt(value)} is above max {_fmt(metric.max)}"
    elif metric.min is not None and value < metric.min:
        outside = f"{name} = {_fmt(value)} is below min {_fmt(metric.min)}"
    if outside is not None:
        doubt = _doubt(rule, raw.tally, alpha)
        if doubt is not None:
            return "Inconclusive", f"{outside}, {doubt}"
        sure = f" beyond doubt ({_evidence(raw.tally, alpha)})" if rule and raw.tally else ""
        return "Failed", outside + sure
    unsure = _unsure(metric, analysis, rule, raw) if analysis.min_requests is None else None
    if unsure is not None:
        return "Inconclusive", unsure
    relative = metric.max_increase_vs_stable is not None or metric.max_drop_vs_stable is not None
    if relative:
        stable = raw.stable_value
        if stable is None:
            return _no_data(analysis.no_data, f"{name}: no data for the stable revision to compare with")
        limit = metric.max_increase_vs_stable
        if limit is not None and value - stable > limit:
            return "Failed", (
                f"{name} = {_fmt(value)} is {_fmt(value - stable)} above the stable revision's "
                f"{_fmt(stable)}; maxIncreaseVsStable {_fmt(limit)}"
            )
        limit = metric.max_drop_vs_stable
        if limit is not None and stable - value > limit:
            return "Failed", (
                f"{name} = {_fmt(value)} is {_fmt(stable - value)} below the stable revision's "
                f"{_fmt(stable)}; maxDropVsStable {_fmt(limit)}"
            )
    bounds = ", ".join(
        f"{k} {_fmt(v)}"
        for k, v in (
            ("min", metric.min),
            ("max", metric.max),
            ("maxIncreaseVsStable", metric.max_increase_vs_stable),
            ("maxDropVsStable", metric.max_drop_vs_stable),
        )
        if v is not None
    )
    against = f" (stable {_fmt(raw.stable_value)})" if relative and raw.stable_value is not None else ""
    return "Successful", f"{name} = {_fmt(value)}{against} within {bounds}"


def _unsure(
    metric: api.Metric, analysis: api.Analysis, rule: templates.TallyRule | None, raw: RawMeasurement
) -> str | None:
    """Why a rate within its bounds is not yet a success (with no minRequests floor, its own
    requests must show it within the bounds at the run's confidence), or None."""
    tally = raw.tally
    if rule is None or tally is None or not rule.proportion:
        return None
    alpha = 1 - analysis.confidence
    if (rule.above is None or stats.below(tally, rule.above, alpha)) and (
        rule.below is None or stats.above(tally, rule.below, alpha)
    ):
        return None
    return (
        f"{metric.name} = {_fmt(raw.value or 0.0)} is within its bounds, but {_fmt(tally.requests)} "
        f"requests are too few to be sure ({_evidence(tally, alpha)}; or set minRequests)"
    )


def _counted(raw: RawMeasurement) -> bool:
    """Whether the measurement saw any request (its tally, else the minRequests count)."""
    if raw.tally is not None:
        return raw.tally.requests > 0
    return (raw.requests or 0) > 0


def _evidence(tally: stats.Tally, alpha: float) -> str:
    lower, upper = stats.bounds(tally, alpha)
    return (
        f"{_fmt(tally.events)} of {_fmt(tally.requests)}: its rate is {_fmt(lower)} to {_fmt(upper)} "
        f"at {100 * (1 - alpha):.4g}% confidence"
    )


def _doubt(rule: templates.TallyRule | None, tally: stats.Tally | None, alpha: float) -> str | None:
    """Why a value outside its bounds does not fail yet (too few requests), or None."""
    if rule is None or tally is None:
        return None
    if (rule.above is not None and stats.above(tally, rule.above, alpha)) or (
        rule.below is not None and stats.below(tally, rule.below, alpha)
    ):
        return None
    return f"but {_fmt(tally.requests)} requests are too few to be sure ({_evidence(tally, alpha)})"
