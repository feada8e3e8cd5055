"""When a rate metric has seen enough requests to fail a canary: exact binomial bounds, spent over looks.

A rate metric (error rate, accuracy, the share of requests slower than a latency limit) is `k`
events out of `n` requests. One request in error out of three is not an error rate of 33%: it
says little. A canary fails on such a metric only once its rate is beyond the limit beyond
doubt: the exact (Clopper-Pearson) confidence bound of the rate lies past the limit, which is
the one-sided binomial test at level `alpha`. It holds its level for any `n`; the Wilson bound,
tried first, fails a good canary too often at the small `n` of a first look (16 requests at a
5% limit: 4.3% of the time at a nominal 3%). Too little data to tell is Inconclusive: it never
fails and never promotes.

A run looks at its data many times (at the scrape cadence in its first window), and every look
is a chance to fail a good canary by bad luck. The run's false-failure budget `alpha` (1 -
`spec.analysis.confidence`) is spent over its looks: the look in slot `s` (one slot per
cadence, counted from the run's first look with requests: looks before it cannot fail) may
spend `alpha * 6 / (pi^2 s^2)`. Those shares add up to `alpha` over any number of slots, so a
run that looks forever still fails a canary whose true rate sits exactly at the limit with
probability at most `alpha` (union bound). Early looks get the larger shares: that is when a
bad canary must be caught.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

_SPEND = 6 / math.pi**2  # 1 / sum(1/s^2): the shares of all slots add up to exactly alpha


@dataclass(frozen=True)
class Tally:
    """`events` of `requests` in the window (Prometheus' increase(): may be fractional)."""

    events: float
    requests: float

    @property
    def rate(self) -> float | None:
        return self.events / self.requests if self.requests > 0 else None


def slot(started: datetime, now: datetime, cadence: timedelta) -> int:
    """The look's slot: 1 in the run's first cadence, 2 in its second, ..."""
    if cadence <= timedelta(0):
        raise ValueError("cadence must be positive")
    return 1 + max(0, int((now - started) / cadence))


def alpha_for(alpha: float, slot_: int) -> float:
    """The share of the run's false-failure budget `alpha` that the look in `slot_` may spend."""
    return alpha * _SPEND / slot_**2


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        m2 = 2 * m
        for aa in (
            m * (b - m) * x / ((qam + m2) * (a + m2)),
            -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2)),
        ):
            d = 1 + aa * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-12:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def above(tally: Tally, limit: float, alpha: float) -> bool:
    """The rate is above `limit` beyond doubt: seeing `events` or more of `requests` at a true rate
    of `limit` has probability below `alpha` (P(X >= k) = I_limit(k, n - k + 1))."""
    n, k = tally.requests, min(max(tally.events, 0.0), tally.requests)
    if k <= 0 or limit >= 1:
        return False
    return limit <= 0 or betainc(k, n - k + 1, limit) < alpha


def below(tally: Tally, limit: float, alpha: float) -> bool:
    """The rate is below `limit` beyond doubt (P(X <= k) = 1 - I_limit(k + 1, n - k) < alpha)."""
    n, k = tally.requests, min(max(tally.events, 0.0), tally.requests)
    if k >= n or limit <= 0:
        return False
    return limit >= 1 or 1 - betainc(k + 1, n - k, limit) < alpha


def bounds(tally: Tally, alpha: float) -> tuple[float, float]:
    """The exact one-sided bounds (lower, upper) of the rate at level `alpha` each: the rates the
    tests above would not reject."""

    def solve(rejects: Callable[[float], bool]) -> float:
        lo, hi = 0.0, 1.0
        for _ in range(40):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if rejects(mid) else (lo, mid)
        return (lo + hi) / 2

    lower = solve(lambda p: above(tally, p, alpha)) if tally.events > 0 else 0.0
    upper = 1 - solve(lambda q: below(tally, 1 - q, alpha)) if tally.events < tally.requests else 1.0
    return lower, upper
