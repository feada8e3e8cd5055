"""The real operator rolls a demo model from v1 to v2 through canary steps in the local world:
real serving pods on the real node behind Traefik (the HTTPRoute's weights), load with feedback,
Prometheus scraping both revisions. The split is what the pods themselves counted."""

from __future__ import annotations

import itertools
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from localworld.prometheus import Prometheus
from localworld.rollouts import OperatorProcess, canary_weight, rolling_revision

from .conftest import Rollout
from .helpers import eventually, until_served

pytestmark = pytest.mark.e2e

NAME = "risk"
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "6s"}},
    {"setWeight": 50},
    {"pause": {"duration": "6s"}},
]


def utc_now() -> str:
    """The time of day in UTC to the millisecond, as Traefik's access log has it."""
    return datetime.now(UTC).strftime("%H:%M:%S.%f")[:12]


def shares_by_weight(samples: list[tuple[int, Counter[str]]], canary: str) -> dict[int, tuple[float, int]]:
    """canary weight -> (canary share of requests, requests), over intervals the weight held."""
    totals: dict[int, Counter[str]] = {}
    for (w0, c0), (w1, c1) in itertools.pairwise(samples):
        if w0 == w1:
            totals.setdefault(w0, Counter()).update(c1 - c0)
    return {w: (c[canary] / n, n) for w, c in totals.items() if (n := sum(c.values()))}


def test_canary_from_v1_to_v2_under_load_splits_by_step_and_ends_healthy_on_v2(
    rollout: Rollout, operator: OperatorProcess, prometheus: Prometheus
) -> None:
    rollout.apply(NAME, "v1", STEPS)
    first = rollout.mds.wait_phase(NAME, "Healthy")
    v1 = first["stableRevision"]
    until_served(rollout.endpoint(NAME))  # the zero-errors count below starts once Traefik routes
    load = rollout.load(rollout.endpoint(NAME), rate=40, duration=180)
    eventually("v1 to answer through Traefik", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)

    rollout.set_image(NAME, "v2")
    samples: list[tuple[int, Counter[str]]] = []
    timeline = [f"{utc_now()} image set to v2"]  # then when each canary weight was first read back
    canary = None
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        status = rollout.mds.status(NAME)
        canary = rolling_revision(status) or canary
        samples.append((canary_weight(status), rollout.served()))
        if len(samples) == 1 or samples[-2][0] != samples[-1][0]:
            timeline.append(f"{utc_now()} canary weight {samples[-1][0]}, phase {status.get('phase')}")
        if status.get("phase") == "Healthy" and status.get("stableRevision") != v1:
            break
        time.sleep(0.5)
    timeline.append(f"{utc_now()} Healthy on {status.get('stableRevision')}")
    final = rollout.mds.wait_phase(NAME, "Healthy", timeout=5)
    v2 = final["stableRevision"]
    assert v2 != v1 and v2 == canary and not rolling_revision(final)

    shares = shares_by_weight(samples, v2)
    assert 20 in shares and 50 in shares, shares
    share20, n20 = shares[20]
    share50, n50 = shares[50]
    assert n20 >= 80 and n50 >= 80, shares
    # Binomial spread at ~200 requests is about 3 points; the bounds allow for more than that, and
    # for Traefik applying a weight a moment after the route shows it.
    assert 0.08 <= share20 <= 0.35, shares
    assert 0.35 <= share50 <= 0.65, shares

    # After promotion everything goes to v2's pods; v1's (still up for scaleDownDelay) get nothing.
    time.sleep(3)
    before = rollout.served()
    time.sleep(3)
    after = rollout.served()
    assert after[v2] > before[v2] and after[v1] <= before[v1], (before, after)

    summary = load.stop()
    # Not one error: a weight moves to a Service only once its EndpointSlices list the pods.
    report = rollout.errors_report(*summary.lines(), *timeline)
    assert summary.errors == 0 and set(summary.codes) == {200}, report
    # Labels reach any pod through Traefik and are forwarded to the one that answered (feedback
    # tokens); a label for a v1 pod going away may be lost (410, or the gateway's 5xx), but none is
    # refused as malformed, forged or misrouted.
    codes = summary.feedback_codes
    assert not set(codes) & {400, 403, 404, 421, 422}, codes
    assert codes.get(200, 0) >= 0.95 * summary.feedback_sent, codes

    def requests_by_revision() -> dict[str, float]:
        # v1's pods may be gone by now (scaleDownDelay), and an instant query drops a series once its
        # target disappears; what Prometheus recorded over the test is what counts.
        selector = f'namespace="{rollout.namespace}", route="/predict"'
        query = f"sum by (revision) (max_over_time(modelserver_requests_total{{{selector}}}[10m]))"
        return {s["metric"]["revision"]: float(s["value"][1]) for s in prometheus.query(query)}

    eventually(
        "Prometheus to have served requests of both revisions",
        lambda: all(requests_by_revision().get(r, 0) > 0 for r in (v1, v2)),
        timeout=20,
    )
