"""Shadow steps through the real gateway (Traefik), with the world's Prometheus: at 50% the
candidate answers about half the stable pods' requests as copies while users get only stable's
answers, no slower than the stated bound; the prediction-agreement metric (min 0.97) promotes a
candidate identical in its predictions (v1-again) and stops one that differs on about 10% of the
inputs (v3-disagrees). The counts are the pods' own, per revision."""

from __future__ import annotations

import http.client
import json
import time
from typing import Any

import pytest

from loadgen.mix import holdout_samples
from localworld.rollouts import OperatorProcess, model_deployment
from localworld.world import Endpoint

from .conftest import Rollout
from .helpers import eventually, until_served

pytestmark = pytest.mark.e2e

NAME = "shadowed"
STEPS: list[dict[str, Any]] = [{"shadow": {"percent": 50}}, {"analysis": {}}]
# Measure every 3s over 20s; the step passes after 2 good rounds. Judged on the candidate's copies
# only (weight 0): agreement, and its own errors, which count the copies as its requests.
ANALYSIS = {
    "interval": "3s",
    "count": 2,
    "window": "20s",
    "minRequests": 5,
    "inconclusiveLimit": 20,
    "metrics": [
        {"name": "agreement", "template": "prediction-agreement", "min": 0.97},
        {"name": "error-rate", "template": "error-rate", "max": 0.05},
    ],
}
REQUESTS = 100
FORGED = {"x-modelship-shadow-percent": "100", "x-modelship-shadow-revision": "someone-else"}
# The stated bound (docs/rollouts.md#shadow-traffic): copies are sent after the answer, so a user's
# p99 may grow only by the machine's noise: at most twice the p99 without a shadow, or 50 ms more.
P99_BOUND = (2.0, 0.050)


def predict(endpoint: Endpoint, body: bytes, headers: dict[str, str] | None = None) -> tuple[float, str]:
    """One prediction through Traefik: its time and the model version that answered."""
    host, _, port = endpoint.url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=10)
    try:
        start = time.perf_counter()
        conn.request(
            "POST",
            "/predict",
            body=body,
            headers={"Host": endpoint.host, "Content-Type": "application/json", **(headers or {})},
        )
        response = conn.getresponse()
        payload = response.read()
        took = time.perf_counter() - start
        assert response.status == 200, payload
        return took, str(json.loads(payload)["model"]["version"])
    finally:
        conn.close()


def p99(endpoint: Endpoint, headers: dict[str, str] | None = None) -> tuple[float, set[str]]:
    """REQUESTS predictions of holdout rows: their p99 time and every model version that answered."""
    samples = holdout_samples()
    answers = [predict(endpoint, samples[i % len(samples)].body, headers) for i in range(REQUESTS)]
    times = sorted(t for t, _ in answers)
    return times[int(0.99 * len(times)) - 1], {v for _, v in answers}


def shadowing(rollout: Rollout, candidate_image: str) -> tuple[str, str]:
    """v1 Healthy, then `candidate_image` at its shadow step (weight 0); (stable, candidate)."""
    manifest = model_deployment(NAME, rollout.world.image("v1"), "v1", STEPS, analysis=ANALYSIS)
    rollout.create(manifest)
    stable = str(rollout.mds.wait_phase(NAME, "Healthy")["stableRevision"])
    rollout.set_image(NAME, candidate_image)

    def shadowed() -> dict[str, Any] | None:
        canary = rollout.mds.status(NAME).get("rollout", {}).get("canary") or {}
        return canary if canary.get("step") == 1 else None

    canary = eventually("the analysis after the shadow step", shadowed, timeout=120)
    assert (canary["weight"], canary["shadowPercent"]) == (0, 50)
    return stable, str(canary["revision"])


def test_at_50_percent_half_the_requests_are_copied_users_see_stable_and_an_identical_model_passes(
    rollout: Rollout, operator: OperatorProcess
) -> None:
    manifest = model_deployment(NAME, rollout.world.image("v1"), "v1", STEPS, analysis=ANALYSIS)
    rollout.create(manifest)
    stable = str(rollout.mds.wait_phase(NAME, "Healthy")["stableRevision"])
    endpoint = rollout.endpoint(NAME)
    until_served(endpoint)
    # The same pods, no shadow; a client's own mark is removed by the gateway: no copies (outside a
    # rollout `<name>-canary` is stable's pods, so a copy would show as a stable answer more).
    before = rollout.served()
    baseline, _ = p99(endpoint, FORGED)
    time.sleep(1)
    assert rollout.served() - before == {stable: REQUESTS}

    rollout.set_image(NAME, "v1-again")

    def canary() -> dict[str, Any]:
        return dict(rollout.mds.status(NAME).get("rollout", {}).get("canary") or {})

    eventually("the shadow step done", lambda: canary().get("shadowPercent") == 50, timeout=120)
    # Held while users' latency is measured: the analysis after the step would judge these copies.
    rollout.mds.patch(NAME, {"paused": True})
    candidate, body = str(canary()["revision"]), holdout_samples()[0].body
    # The step completed once the route showed the mark; Traefik may take a moment more to load it.
    eventually(
        "a first copy to reach the candidate",
        lambda: predict(endpoint, body) and rollout.served()[candidate] > 0,
        timeout=30,
    )

    before = rollout.served()
    shadowed, versions = p99(endpoint)
    time.sleep(1)  # the last copies leave after their answers
    counted = rollout.served() - before
    assert versions == {"v1"}, versions  # users see only the stable model's answers
    assert counted[stable] == REQUESTS, counted  # and only stable answered them
    assert 30 <= counted[candidate] <= 70, counted  # binomial(100, 0.5) outside this: 1 in 10^4
    factor, slack = P99_BOUND
    assert shadowed <= max(factor * baseline, baseline + slack), (baseline, shadowed)

    # Load through the gateway while the analysis judges the copies: every row agrees.
    rollout.mds.patch(NAME, {"paused": False})
    rollout.load(endpoint, rate=20, duration=60, feedback_ratio=0)
    final = eventually(
        "the identical candidate to be promoted",
        lambda: (s := rollout.mds.status(NAME)).get("stableRevision") == candidate and s,
        timeout=120,
    )
    run = final["analysis"][0]
    agreement = next(m for m in run["metrics"] if m["name"] == "agreement")
    assert agreement["successful"] >= 2 and agreement["failed"] == 0, agreement
    assert {m["value"] for m in agreement["measurements"] if "value" in m} == {1.0}, agreement


def test_a_candidate_that_differs_on_a_tenth_of_the_inputs_is_stopped_by_the_agreement_metric(
    rollout: Rollout, operator: OperatorProcess
) -> None:
    stable, candidate = shadowing(rollout, "v3-disagrees")
    rollout.load(rollout.endpoint(NAME), rate=20, duration=60, feedback_ratio=0)
    final = rollout.mds.wait_phase(NAME, "Degraded", timeout=120)
    assert final["stableRevision"] == stable
    assert final["rollout"]["aborted"]["revision"] == candidate
    condition = next(c for c in final["conditions"] if c["type"] == "Progressing")
    assert condition["reason"] == "AnalysisFailed", condition
    assert "agreement = " in condition["message"] and "below min 0.97" in condition["message"], condition
