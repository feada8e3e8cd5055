"""Analysis and automatic rollback, end to end: the real operator judges real serving pods by the
world's Prometheus, while load with feedback flows through Traefik.

Each bad demo model is rolled back by the metric it breaks; an unreachable Prometheus pauses the
rollout without promoting, and past `unreachableTimeout` rolls it back; a quiet canary is not
judged unless `noData: fail`; the smoke test stops a wrong model before any user request;
blue/green gates hold or undo the switch."""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest

from localworld import demomodels
from localworld.rollouts import at, canary_weight, model_deployment, rolling_revision
from localworld.world import Endpoint, LocalWorld

from .conftest import Rollout
from .helpers import eventually, until_served

pytestmark = pytest.mark.e2e

NAME = "risk"
# Scrape every 2s (the world's); measure every 3s; rates over 20s; a step passes after 2 good rounds.
ANALYSIS = demomodels.analysis(
    "3s", accuracy=True, count=2, window="20s", minRequests=5, inconclusiveLimit=20
)
STEPS: list[dict[str, Any]] = [{"setWeight": 30}, {"analysis": {}}, {"setWeight": 60}, {"analysis": {}}]
RATE = 30.0


def create(r: Rollout, image: str, **spec: Any) -> str:
    """A ModelDeployment on `image`, Healthy; returns its stable revision."""
    manifest = model_deployment(NAME, r.world.image(image), image, STEPS, analysis=ANALYSIS)
    manifest["spec"].update(spec)
    r.create(manifest)
    return str(r.mds.wait_phase(NAME, "Healthy")["stableRevision"])


def progressing(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == "Progressing")


def paused(status: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in status.get("conditions", []) if c["type"] == "Paused"), {})


def ready(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == "Ready")


def no_canary_traffic_after_rollback(r: Rollout, status: dict[str, Any]) -> None:
    """Counted by the pods themselves: the aborted revision's answer nothing more, the stable's do."""
    canary, stable = at(status, "rollout.aborted.revision"), status["stableRevision"]
    time.sleep(3)  # Traefik applies a route change within its throttle (static config)
    before = r.served()
    time.sleep(3)
    after = r.served()
    assert after[canary] <= before[canary], (before, after)  # <: its pods are going away
    assert after[stable] > before[stable], (before, after)


def test_a_good_canary_passes_every_analysis_and_reaches_100_percent(rollout: Rollout) -> None:
    v1 = create(
        rollout, "v1", smokeTest={"inputs": [[0.0] * 4], "expected": [[0.5, 0.5, 0.5]], "tolerance": 0.5}
    )
    rollout.load(rollout.endpoint(NAME), rate=RATE, duration=240)
    rollout.set_image(NAME, "v2")
    final = eventually(
        "v2 to be promoted",
        lambda: (s := rollout.mds.status(NAME)).get("stableRevision") not in (None, v1) and s,
        timeout=150,
    )
    assert final["phase"] in ("Healthy", "Progressing")
    assert final["smokeTest"]["passed"], final["smokeTest"]
    run = final["analysis"][0]
    assert (run["kind"], run["step"], run["phase"]) == ("step", 3, "Successful")
    for metric in run["metrics"]:
        assert metric["successful"] >= 2 and metric["failed"] == 0, metric
        assert all("value" in m for m in metric["measurements"] if m["verdict"] == "Successful")
    assert {m["name"] for m in run["metrics"]} == {"error-rate", "latency-p99", "accuracy"}
    rollout.mds.wait_phase(NAME, "Healthy")


@pytest.mark.parametrize(
    ("bad", "metric", "words"),
    [
        ("v3-bad-errors", "error-rate", "above max 0.05"),
        ("v3-slow", "latency-p99", "above max 0.25"),
        ("v3-inaccurate", "accuracy", "below min 0.6"),
    ],
)
def test_each_bad_model_is_rolled_back_by_the_metric_it_breaks(
    rollout: Rollout, bad: str, metric: str, words: str
) -> None:
    v1 = create(rollout, "v1")
    load = rollout.load(rollout.endpoint(NAME), rate=RATE, duration=240)
    eventually("v1 to answer", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)
    rollout.set_image(NAME, bad)
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=120)
    condition = progressing(status)
    assert condition["reason"] == "AnalysisFailed", condition
    assert f"{metric} = " in condition["message"] and words in condition["message"], condition
    # Failed on the revision's own request count, not on a value from a handful of requests.
    assert "beyond doubt" in condition["message"], condition
    assert status["stableRevision"] == v1 and not rolling_revision(status)
    no_canary_traffic_after_rollback(rollout, status)


def analysis_running(r: Rollout) -> None:
    eventually(
        "the first analysis step to run",
        lambda: (r.mds.status(NAME).get("analysis") or [{}])[0].get("phase") == "Running",
        timeout=60,
    )


def test_prometheus_down_pauses_without_promoting_and_the_rollout_continues_when_it_is_back(
    rollout: Rollout, world: LocalWorld
) -> None:
    # Down for 10 intervals: an unreachable measurement must not count toward inconclusiveLimit
    # (5 here; 6 of them in a row used to end the run Inconclusive, waiting for a person).
    v1 = create(rollout, "v1", analysis={**ANALYSIS, "inconclusiveLimit": 5})
    rollout.load(rollout.endpoint(NAME), rate=RATE, duration=240)
    rollout.set_image(NAME, "v2")
    analysis_running(rollout)
    world.prometheus.stop()
    try:
        status = eventually(
            "the rollout to pause as Prometheus is unreachable",
            lambda: (s := rollout.mds.status(NAME)).get("phase") == "Paused" and s,
            timeout=30,
        )
        assert paused(status)["reason"] == "PrometheusUnreachable", paused(status)
        assert f"Prometheus at {world.prometheus.url} is unreachable" in paused(status)["message"]
        assert "unreachableTimeout 10m" in paused(status)["message"]
        weight = at(status, "rollout.canary.weight")
        deadline = time.monotonic() + 30  # 10 intervals without Prometheus: nothing moves
        while time.monotonic() < deadline:
            later = rollout.mds.status(NAME)
            assert (later["phase"], at(later, "rollout.canary.weight"), later["stableRevision"]) == (
                "Paused",
                weight,
                v1,
            ), later
            assert paused(later)["reason"] == "PrometheusUnreachable", paused(later)
            time.sleep(1)
        run = rollout.mds.status(NAME)["analysis"][0]
        assert run["phase"] == "Running" and run["unreachableSince"], run
    finally:
        world.prometheus.start()
    eventually(
        "the rollout to finish once Prometheus is back",
        lambda: rollout.mds.status(NAME).get("stableRevision") not in (None, v1),
        timeout=150,
    )


def test_prometheus_down_past_unreachable_timeout_rolls_back_saying_for_how_long(
    rollout: Rollout, world: LocalWorld
) -> None:
    v1 = create(rollout, "v1", analysis={**ANALYSIS, "unreachableTimeout": "6s"})
    rollout.load(rollout.endpoint(NAME), rate=RATE, duration=240)
    rollout.set_image(NAME, "v2")
    analysis_running(rollout)
    world.prometheus.stop()
    try:
        status = rollout.mds.wait_phase(NAME, "Degraded", timeout=60)
    finally:
        world.prometheus.start()
    for condition in (progressing(status), ready(status)):
        assert condition["reason"] == "PrometheusUnreachable", condition
        assert "Prometheus unreachable for " in condition["message"], condition
        assert "(unreachableTimeout 6s)" in condition["message"], condition
    assert status["stableRevision"] == v1 and status["analysis"][0]["phase"] == "Unreachable"
    no_canary_traffic_after_rollback(rollout, status)


def test_a_canary_without_traffic_is_not_judged_and_with_nodata_fail_is_rolled_back(
    rollout: Rollout,
) -> None:
    v1 = create(rollout, "v1")  # no load at all
    rollout.set_image(NAME, "v2")
    status = eventually(
        "the analysis to be inconclusive",
        lambda: (s := rollout.mds.status(NAME)).get("phase") == "Paused" and s,
    )
    assert paused(status)["reason"] == "AnalysisInconclusive" and "minRequests 5" in paused(status)["message"]
    assert status["stableRevision"] == v1
    rollout.mds.patch(NAME, {"analysis": {**ANALYSIS, "noData": "fail"}})
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=60)
    assert (
        progressing(status)["reason"] == "AnalysisFailed" and "noData: fail" in progressing(status)["message"]
    )


def predict(endpoint: Endpoint, rows: list[list[float]]) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{endpoint.url}/predict",
        data=json.dumps({"instances": rows}).encode(),
        headers={"Content-Type": "application/json", "Host": endpoint.host},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        answer: dict[str, Any] = json.load(reply)
    return answer


def test_the_smoke_test_stops_a_wrong_model_before_any_user_request_reaches_it(rollout: Rollout) -> None:
    create(rollout, "v1")
    endpoint = rollout.endpoint(NAME)
    rows = [[0.5, -1.0, 2.0, 0.1], [1.5, 0.0, -0.5, 2.2]]

    def answered() -> dict[str, Any] | None:
        try:
            return predict(endpoint, rows)
        except OSError:  # 503 until Traefik has loaded the new route's endpoints
            return None

    expected = eventually("v1 to answer through Traefik", answered, timeout=30)["probabilities"]
    rollout.mds.patch(NAME, {"smokeTest": {"inputs": rows, "expected": expected, "tolerance": 0.05}})
    rollout.load(endpoint, rate=RATE, duration=240)
    rollout.set_image(NAME, "v3-inaccurate")
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=90)
    condition = progressing(status)
    assert condition["reason"] == "SmokeTestFailed" and "expected" in condition["message"], condition
    assert status["smokeTest"]["passed"] is False
    # The canary's pods answered the smoke test's one request each, and no user request (the load
    # sends 30 a second): counted by the pods themselves.
    canary = at(status, "rollout.aborted.revision")
    assert rollout.served()[canary] <= 2, rollout.served()


def blue_green(r: Rollout, image: str, **gates: bool) -> str:
    return create(
        r,
        image,
        strategy={
            "blueGreen": {"autoPromote": True, "scaleDownDelay": "5s", "abortScaleDownDelay": "0s", **gates}
        },
    )


def test_blue_green_with_a_failing_pre_promotion_analysis_never_switches(rollout: Rollout) -> None:
    v1 = blue_green(rollout, "v1", prePromotionAnalysis=True)
    until_served(rollout.endpoint(NAME))
    active = rollout.load(rollout.endpoint(NAME), rate=10, duration=240)
    # Test traffic for the preview, as a prober would send, through a route of its own.
    rollout.load(rollout.expose_service(f"{NAME}-preview"), rate=RATE, duration=240)
    rollout.set_image(NAME, "v3-bad-errors")
    weights = []
    deadline = time.monotonic() + 120
    while (status := rollout.mds.status(NAME)).get("phase") != "Degraded" and time.monotonic() < deadline:
        weights.append(canary_weight(status))  # 100 once switched
        time.sleep(0.3)
    assert progressing(status)["reason"] == "AnalysisFailed", status
    assert status["stableRevision"] == v1 and set(weights) <= {0}
    # v3-bad-errors fails 30% of predictions with a 500: not one user request through the active
    # route reached it. Open bug (noted for #18): about once in ~100 requests in some runs, Traefik
    # answers 503 on this route, which only ever points at v1, while the preview's route and
    # Services change; one such gateway 503 is tolerated here, nothing else.
    summary = active.summary()
    report = rollout.errors_report(*summary.lines())
    assert 500 not in summary.codes and summary.codes.get(503, 0) <= 1, report
    assert set(summary.codes) <= {200, 503}, summary.lines()


def test_blue_green_with_a_failing_post_promotion_analysis_switches_back(rollout: Rollout) -> None:
    v1 = blue_green(rollout, "v1", postPromotionAnalysis=True)
    rollout.load(rollout.endpoint(NAME), rate=RATE, duration=240)
    rollout.set_image(NAME, "v3-bad-errors")
    eventually(
        "the switch to the new revision",
        lambda: canary_weight(rollout.mds.status(NAME)) == 100,
        timeout=90,
    )
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=90)
    assert (
        progressing(status)["reason"] == "AnalysisFailed"
        and "error-rate = " in progressing(status)["message"]
    )
    assert status["stableRevision"] == v1
    no_canary_traffic_after_rollback(rollout, status)
