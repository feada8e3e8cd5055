"""A/B statistics, pure: is the candidate better, worse, or the same as the stable revision?

An `experiment` step serves both revisions at fixed weights, counts what each did over the same
stretch of time, then tests the difference once, at a stated confidence (alpha = 1 - confidence,
two-sided) and a minimum detectable effect (MDE):

- accuracy: the two-proportion z-test on the feedback rows of each revision (correct of all);
  the effect is the difference in accuracy, candidate minus stable;
- latency: the Mann-Whitney U test on the request-duration histograms of both revisions, each
  bucket a group of tied values (the tie-corrected variance); the effect is Cliff's delta,
  P(a candidate request is slower) - P(it is faster), from -1 to 1.

A difference beyond doubt (p < alpha) is Better or Worse. No difference shown is Equivalent only
when the samples were large enough to show a difference of the MDE with probability `power`
(the design power at the MDE, never the "observed power" at the effect seen); otherwise it is
NotEnoughData, which never promotes; so is a sample too small for the normal approximations
(MIN_EXPECTED, MIN_REQUESTS). docs/analysis.md#experiments writes the maths down.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Outcome = Literal["Better", "Worse", "Equivalent", "NotEnoughData"]
# The normal approximations need: each revision's expected correct and incorrect rows under "no
# difference" at least this many (the textbook rule for the two-proportion z-test) ...
MIN_EXPECTED = 5
# ... and at least this many requests per revision for the U test.
MIN_REQUESTS = 10


@dataclass(frozen=True)
class Sample:
    """What each revision counted over the experiment, per category in order: accuracy's
    (incorrect, correct) feedback rows, or latency's requests per histogram bucket, fastest
    first (`bounds[i]`: bucket i's upper bound in seconds, the last one `inf`)."""

    candidate: tuple[float, ...]
    stable: tuple[float, ...]
    bounds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Comparison:
    """One metric's test: the outcome and the figures that led to it."""

    outcome: Outcome
    samples: float  # the candidate's
    stable_samples: float
    value: float | None  # the candidate's accuracy, or median latency
    stable_value: float | None
    effect: float  # accuracy: candidate - stable; latency: Cliff's delta (> 0: the candidate is slower)
    p_value: float
    power: float  # the chance these samples had to show a difference of the MDE


def normal_cdf(z: float) -> float:
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def normal_quantile(p: float) -> float:
    """The z with normal_cdf(z) = p, for 0 < p < 1 (bisection: exact to double precision)."""
    if not 0 < p < 1:
        raise ValueError(f"a probability strictly between 0 and 1, got {p}")
    lo, hi = -40.0, 40.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if normal_cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def _two_sided(z: float) -> float:
    return min(1.0, 2 * (1 - normal_cdf(abs(z))))


def _outcome(worse: bool, p_value: float, power: float, alpha: float, wanted: float) -> Outcome:
    if p_value < alpha:
        return "Worse" if worse else "Better"
    return "Equivalent" if power >= wanted else "NotEnoughData"


def proportions(sample: Sample, alpha: float, mde: float, power: float) -> Comparison:
    """The two-proportion z-test (pooled variance under the null) of accuracy: `sample` holds
    (incorrect, correct) rows of each revision."""
    x1, n1 = sample.candidate[1], sum(sample.candidate)
    x2, n2 = sample.stable[1], sum(sample.stable)
    p1 = x1 / n1 if n1 > 0 else None
    p2 = x2 / n2 if n2 > 0 else None
    if p1 is None or p2 is None:
        return Comparison("NotEnoughData", n1, n2, p1, p2, 0.0, 1.0, 0.0)
    effect = p1 - p2
    pooled = (x1 + x2) / (n1 + n2)
    if min(n1, n2) * min(pooled, 1 - pooled) < MIN_EXPECTED and pooled not in (0.0, 1.0):
        # Too few rows of one kind for the normal approximation: its p-value would be too small.
        return Comparison("NotEnoughData", n1, n2, p1, p2, effect, 1.0, 0.0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    p_value = _two_sided(effect / se) if se > 0 else (1.0 if effect == 0 else 0.0)
    achieved = proportions_power(p2, n1, n2, alpha, mde)
    outcome = _outcome(effect < 0, p_value, achieved, alpha, power)
    return Comparison(outcome, n1, n2, p1, p2, effect, p_value, achieved)


def proportions_power(baseline: float, n1: float, n2: float, alpha: float, mde: float) -> float:
    """The chance the z-test at `alpha` shows a candidate `mde` worse than a stable revision at
    `baseline` (or `mde` better, when worse is not a rate), with n1 and n2 rows: Phi((mde -
    z(1 - alpha/2) se0) / se1), se0 the pooled standard error under the null, se1 the one under
    the alternative."""
    if n1 <= 0 or n2 <= 0:
        return 0.0
    other = baseline - mde if baseline - mde >= 0 else baseline + mde
    if not 0 <= other <= 1:
        return 0.0  # no rate is mde away from the baseline: nothing to detect
    pooled = (n1 * other + n2 * baseline) / (n1 + n2)
    se0 = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    se1 = math.sqrt(other * (1 - other) / n1 + baseline * (1 - baseline) / n2)
    if se1 == 0:
        return 1.0
    return normal_cdf((mde - normal_quantile(1 - alpha / 2) * se0) / se1)


def distributions(sample: Sample, alpha: float, mde: float, power: float) -> Comparison:
    """The Mann-Whitney U test of latency on bucketed counts: every request of a bucket ties with
    the others of it. U counts, over all (candidate, stable) pairs of requests, the pairs where the
    candidate's was slower, a tie counting one half."""
    c, s = sample.candidate, sample.stable
    n1, n2 = sum(c), sum(s)
    value, stable_value = median(c, sample.bounds), median(s, sample.bounds)
    if n1 <= 0 or n2 <= 0:
        return Comparison("NotEnoughData", n1, n2, value, stable_value, 0.0, 1.0, 0.0)
    u, below = 0.0, 0.0
    for mine, theirs in zip(c, s, strict=True):
        u += mine * (below + theirs / 2)
        below += theirs
    effect = 2 * u / (n1 * n2) - 1  # Cliff's delta
    if min(n1, n2) < MIN_REQUESTS:  # the normal approximation of U needs a few of each
        return Comparison("NotEnoughData", n1, n2, value, stable_value, effect, 1.0, 0.0)
    n = n1 + n2
    ties = sum((a + b) ** 3 - (a + b) for a, b in zip(c, s, strict=True))
    variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
    z = (u - n1 * n2 / 2) / math.sqrt(variance) if variance > 0 else 0.0
    p_value = _two_sided(z) if variance > 0 else 1.0
    achieved = distributions_power(n1, n2, alpha, mde)
    outcome = _outcome(effect > 0, p_value, achieved, alpha, power)
    return Comparison(outcome, n1, n2, value, stable_value, effect, p_value, achieved)


def distributions_power(n1: float, n2: float, alpha: float, mde: float) -> float:
    """The chance the U test at `alpha` shows a Cliff's delta of `mde` with n1 and n2 requests
    (Noether's approximation, P(slower) = 1/2 + mde/2, with the variance without ties: ties only
    make the test more sensitive, so this errs on the side of NotEnoughData)."""
    if n1 <= 0 or n2 <= 0:
        return 0.0
    shift = mde / 2 * math.sqrt(12 * n1 * n2 / (n1 + n2 + 1))
    return normal_cdf(shift - normal_quantile(1 - alpha / 2))


def median(counts: tuple[float, ...], bounds: tuple[float, ...]) -> float | None:
    """The median of bucketed values, interpolated inside its bucket as Prometheus'
    histogram_quantile does (a median in the last, unbounded bucket is the last finite bound)."""
    total = sum(counts)
    if total <= 0 or len(bounds) != len(counts):
        return None
    rank, seen, lower = total / 2, 0.0, 0.0
    for count, upper in zip(counts, bounds, strict=True):
        if count > 0 and seen + count >= rank:
            if math.isinf(upper):
                return lower
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper if not math.isinf(upper) else lower
    return lower


def histograms(candidate: Mapping[str, float], stable: Mapping[str, float]) -> Sample:
    """A latency Sample from two cumulative histograms as Prometheus returns them (`le` -> requests
    at or below it), on the union of their bounds (a bound one lacks counts what its next lower
    bound holds). A cumulative count that falls (a counter reset inside the window) counts 0."""
    bounds = sorted({float(le) for le in (*candidate, *stable)})

    def per_bucket(cumulative: Mapping[str, float]) -> tuple[float, ...]:
        by_bound = sorted((float(le), count) for le, count in cumulative.items())
        out, before, i, held = [], 0.0, 0, 0.0
        for bound in bounds:
            while i < len(by_bound) and by_bound[i][0] <= bound:
                held = max(held, by_bound[i][1])
                i += 1
            out.append(max(held - before, 0.0))
            before = max(before, held)
        return tuple(out)

    return Sample(per_bucket(candidate), per_bucket(stable), tuple(bounds))
