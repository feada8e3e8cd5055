"""setHeaderRoute through the real gateway (Traefik): with the canary at weight 0, every request
carrying the header reaches the candidate, and no other request does. The counts are the pods'
own, per revision."""

from __future__ import annotations

import http.client
from collections import Counter
from typing import Any

import pytest

from loadgen.mix import holdout_samples
from localworld.rollouts import OperatorProcess
from localworld.world import Endpoint

from .conftest import Rollout
from .helpers import eventually

pytestmark = pytest.mark.e2e

NAME = "pinned"
REQUESTS = 20
PINNED = {"x-canary": "yes"}
STEPS: list[dict[str, Any]] = [
    {"setHeaderRoute": {"name": "qa", "match": [{"headerName": "x-canary", "headerValue": "yes"}]}},
    {"pause": {}},
    {"setWeight": 50},
]


def predict(endpoint: Endpoint, headers: dict[str, str]) -> int:
    """One prediction through Traefik; its HTTP status."""
    host, _, port = endpoint.url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=10)
    try:
        body = holdout_samples()[0].body
        conn.request(
            "POST",
            "/predict",
            body=body,
            headers={"Host": endpoint.host, "Content-Type": "application/json", **headers},
        )
        return conn.getresponse().status
    finally:
        conn.close()


def served(rollout: Rollout, endpoint: Endpoint, headers: dict[str, str]) -> Counter[str]:
    """REQUESTS predictions with `headers` (each answered 200); which revision served them."""
    before = rollout.served()
    codes = Counter(predict(endpoint, headers) for _ in range(REQUESTS))
    assert codes == {200: REQUESTS}, rollout.errors_report(str(codes))
    return rollout.served() - before


def test_at_weight_0_header_pinned_requests_all_reach_the_candidate_and_the_others_none(
    rollout: Rollout, operator: OperatorProcess
) -> None:
    rollout.apply(NAME, "v1", STEPS, replicas=1)
    stable = rollout.mds.wait_phase(NAME, "Healthy")["stableRevision"]
    endpoint = rollout.endpoint(NAME)
    rollout.set_image(NAME, "v2")

    def paused() -> dict[str, Any] | None:
        canary = rollout.mds.status(NAME).get("rollout", {}).get("canary") or {}
        return canary if canary.get("step") == 1 else None

    canary = eventually("the pause after setHeaderRoute", paused, timeout=120)
    assert canary["weight"] == 0
    candidate = canary["revision"]
    # The step completed once the route showed the rule; Traefik may take a moment more to load it.
    eventually(
        "a pinned request to reach the candidate",
        lambda: predict(endpoint, PINNED) == 200 and rollout.served()[candidate] > 0,
        timeout=30,
    )

    pinned = served(rollout, endpoint, PINNED)
    assert pinned == {candidate: REQUESTS}, pinned
    for others in ({}, {"x-canary": "no"}):
        unpinned = served(rollout, endpoint, others)
        assert unpinned == {stable: REQUESTS}, (others, unpinned)
