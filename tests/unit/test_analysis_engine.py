"""engine.decide with analysis: steps, background runs, the smoke test and blue/green gates."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from modelship import api
from modelship.core.analysis.cadence import Scrape
from modelship.core.analysis.verdicts import RawMeasurement

from .enginesim import World, command, spec
from .test_canary import NEW_IMAGE, condition, name_of, replicas, stable_world, step

pytestmark = pytest.mark.unit

ANALYSIS: dict[str, Any] = {
    "interval": "5s",
    "count": 2,
    "metrics": [
        {"name": "errors", "template": "error-rate", "max": 0.05},
        {"name": "accuracy", "template": "accuracy", "min": 0.8},
    ],
}
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 60}, {"analysis": {}}]
BAD_ERRORS = RawMeasurement(0.3, requests=1000)
NO_PROMETHEUS = RawMeasurement(unreachable="connection refused")


def with_analysis(
    image: str | None = None, steps: list[dict[str, Any]] = STEPS, **fields: Any
) -> api.ModelDeploymentSpec:
    body: dict[str, Any] = {
        "replicas": 4,
        "strategy": {"canary": {"steps": steps, "abortScaleDownDelay": "20s"}},
        "traffic": {"router": "gatewayAPI", "httpRoute": "fraud"},
        "analysis": ANALYSIS,
        **fields,
    }
    if image:
        body["image"] = image
    return spec(**body)


def service_selector(world: World, s: api.ModelDeploymentSpec, name: str = "fraud") -> str:
    decision = world.decide(s)
    svc = next(m for m in decision.apply if m["kind"] == "Service" and m["metadata"]["name"] == name)
    return str(svc["spec"]["selector"].get("modelship.io/revision", "*"))


def run_until(world: World, s: api.ModelDeploymentSpec, done: Any, passes: int = 30) -> None:
    for _ in range(passes):
        world.reconcile(s)
        world.settle()
        if done(world.status):
            return
    raise AssertionError(f"not reached: {api.dump(world.status)}")


def test_a_good_canary_passes_each_analysis_step_and_is_promoted_with_measurements_in_status() -> None:
    old = with_analysis()
    world = stable_world(old)
    world.scrape = Scrape(timedelta(seconds=30))  # scraped slower than the interval: no probes
    new = with_analysis(NEW_IMAGE)
    world.reconcile(new)
    world.settle()
    decision = world.reconcile(new)
    assert world.status.canary is not None
    assert world.status.canary.step == 1 and world.status.canary.weight == 20
    run = world.status.analysis[0]  # type: ignore[index]
    assert (run.kind, run.step, run.phase) == ("step", 1, "Running")
    assert condition(world.status, "Progressing").reason == "Canarying"
    assert decision.wake_at == run.started_at + api.parse_duration("5s")  # the first measurement
    run_until(world, new, lambda s: s.stable_revision == name_of(new))
    assert world.status.phase == "Healthy"
    last = world.status.analysis[0]  # type: ignore[index]
    assert (last.step, last.phase) == (3, "Successful")
    assert all(m.successful == 2 and m.measurements for m in last.metrics)
    reasons = [e.reason for e in world.events]
    assert reasons.count("AnalysisSuccessful") == 2 and "AnalysisMeasured" in reasons


def test_a_failing_metric_sends_all_traffic_to_stable_in_the_same_pass_and_says_why() -> None:
    old = with_analysis()
    world = stable_world(old)
    new = with_analysis(NEW_IMAGE)
    step(world, new)
    world.metrics["errors"] = BAD_ERRORS
    world.tick(5)
    decision = world.reconcile(new)
    status = decision.status
    assert status.phase == "Degraded" and status.canary is None
    progressing = condition(status, "Progressing")
    assert progressing.reason == "AnalysisFailed"
    assert "errors = 0.3" in progressing.message and "above max 0.05" in progressing.message
    assert any(e.reason == "AnalysisFailed" and e.type == "Warning" for e in decision.events)
    assert status.aborted is not None
    assert status.aborted.reason == "AnalysisFailed" and status.aborted.revision == name_of(new)
    # The canary's pods stay (no traffic) for abortScaleDownDelay, then go to 0.
    assert replicas(world)[name_of(new)] > 0
    world.tick(20)
    world.reconcile(new)
    assert replicas(world)[name_of(new)] == 0 and replicas(world)[name_of(old)] == 4
    assert world.status.analysis[0].phase == "Failed"  # type: ignore[index]


def test_a_broken_query_past_the_error_limit_aborts_with_analysis_error() -> None:
    old = with_analysis(analysis={**ANALYSIS, "consecutiveErrorLimit": 1})
    world = stable_world(old)
    new = with_analysis(NEW_IMAGE, analysis={**ANALYSIS, "consecutiveErrorLimit": 1})
    step(world, new)
    world.metrics["errors"] = RawMeasurement(error="bad_data: unknown function")
    run_until(world, new, lambda s: s.aborted is not None, passes=10)
    assert condition(world.status, "Progressing").reason == "AnalysisError"


@pytest.mark.parametrize("intervals", [3, 10])
def test_prometheus_unreachable_pauses_without_promoting_and_continues_when_back(intervals: int) -> None:
    # The default inconclusiveLimit (3) and unreachableTimeout (10m): an outage of 10 intervals of
    # 5s is inside the bound, and is not counted as inconclusive measurements.
    old = with_analysis()
    world = stable_world(old)
    new = with_analysis(NEW_IMAGE)
    step(world, new)
    world.metrics = {"errors": NO_PROMETHEUS, "accuracy": NO_PROMETHEUS}
    for _ in range(intervals):
        world.tick(5)
        world.reconcile(new)
        assert world.status.phase == "Paused" and world.status.canary is not None
        assert world.status.canary.weight == 20 and world.status.stable_revision == name_of(old)
        paused = condition(world.status, "Paused")
        assert paused.reason == "PrometheusUnreachable"
        assert "Prometheus unreachable since" in paused.message and "connection refused" in paused.message
        assert "unreachableTimeout 10m" in paused.message
        assert condition(world.status, "Ready").status == "False"
    world.metrics = {}
    run_until(world, new, lambda s: s.stable_revision == name_of(new))


def test_prometheus_unreachable_past_unreachable_timeout_rolls_back_saying_for_how_long() -> None:
    bounded = {**ANALYSIS, "unreachableTimeout": "30s"}
    old = with_analysis(analysis=bounded)
    world = stable_world(old)
    new = with_analysis(NEW_IMAGE, analysis=bounded)
    step(world, new)
    world.metrics = {"errors": NO_PROMETHEUS, "accuracy": NO_PROMETHEUS}
    run_until(world, new, lambda s: s.phase != "Paused", passes=10)
    status = world.status
    assert status.phase == "Degraded" and status.canary is None and status.stable_revision == name_of(old)
    assert status.aborted is not None and status.aborted.reason == "PrometheusUnreachable"
    for type_ in ("Progressing", "Ready"):
        c = condition(status, type_)
        assert c.reason == "PrometheusUnreachable" and c.status == "False"
        assert "Prometheus unreachable for 30s (unreachableTimeout 30s): connection refused" in c.message
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}  # traffic back to stable
    warning = next(e for e in world.events if e.reason == "PrometheusUnreachable")
    assert warning.type == "Warning" and "Prometheus unreachable for 30s" in warning.message
    assert "all traffic back to stable" in warning.message
    assert world.status.analysis[0].phase == "Unreachable"  # type: ignore[index]


def test_too_little_traffic_is_inconclusive_and_with_nodata_fail_is_rolled_back() -> None:
    quiet = RawMeasurement(0.0, requests=0)
    world = stable_world(with_analysis())
    new = with_analysis(NEW_IMAGE)
    step(world, new)
    world.metrics = {"errors": quiet, "accuracy": quiet}
    world.tick(5)
    world.reconcile(new)
    assert (
        world.status.phase == "Paused"
        and "0 requests in the window" in condition(world.status, "Paused").message
    )

    strict = {**ANALYSIS, "noData": "fail"}
    world = stable_world(with_analysis(analysis=strict))
    new = with_analysis(NEW_IMAGE, analysis=strict)
    step(world, new)
    world.metrics = {"errors": quiet, "accuracy": quiet}
    world.tick(5)
    world.reconcile(new)
    assert (
        world.status.phase == "Degraded" and condition(world.status, "Progressing").reason == "AnalysisFailed"
    )


def test_inconclusive_past_its_limit_waits_for_a_person_and_promote_accepts_it() -> None:
    lenient = {**ANALYSIS, "inconclusiveLimit": 1}
    world = stable_world(with_analysis(analysis=lenient))
    new = with_analysis(NEW_IMAGE, analysis=lenient)
    step(world, new)
    world.metrics = {"errors": RawMeasurement(None, requests=1000)}
    for _ in range(4):
        world.tick(5)
        world.reconcile(new)
    assert world.status.analysis[0].phase == "Inconclusive"  # type: ignore[index]
    assert world.status.phase == "Paused" and world.status.canary is not None
    assert world.status.canary.step == 1
    assert "promote" in condition(world.status, "Paused").message
    assert world.decide(new).wake_at is None  # nothing more to measure: a person decides


def test_background_analysis_from_a_step_aborts_a_later_step() -> None:
    steps = [
        {"setWeight": 20},
        {"pause": {"duration": "60s"}},
        {"setWeight": 50},
        {"pause": {"duration": "60s"}},
    ]
    fields = {"analysis": {**ANALYSIS, "background": {"startingStep": 1}}}
    world = stable_world(with_analysis(steps=steps, **fields))
    new = with_analysis(NEW_IMAGE, steps=steps, **fields)
    step(world, new)
    assert [r.kind for r in world.status.analysis or []] == ["background"]
    world.tick(5)
    world.reconcile(new)
    assert world.status.phase == "Paused"  # the timed pause, not the background run
    world.metrics["accuracy"] = RawMeasurement(0.1, requests=1000)
    world.tick(5)
    world.reconcile(new)
    assert condition(world.status, "Progressing").reason == "AnalysisFailed"
    assert "accuracy = 0.1" in condition(world.status, "Progressing").message


SMOKE = {"inputs": [[1.0, 2.0]], "expected": [[0.25, 0.75]], "tolerance": 0.01}


def test_the_smoke_test_passes_before_the_canary_gets_any_traffic() -> None:
    world = stable_world(with_analysis(smokeTest=SMOKE))
    new = with_analysis(NEW_IMAGE, smokeTest=SMOKE)
    world.reconcile(new)
    assert world.status.canary is not None
    assert world.status.canary.weight == 0 and world.status.smoke_test is None
    world.settle()
    world.reconcile(new)  # the shell smoke-tests the ready canary pod; weight may now move
    assert world.status.smoke_test is not None and world.status.smoke_test.passed
    world.reconcile(new)
    assert world.status.canary is not None and world.status.canary.weight == 20


def test_a_smoke_test_mismatch_aborts_before_any_user_request_reaches_the_canary() -> None:
    world = stable_world(with_analysis(smokeTest=SMOKE))
    new = with_analysis(NEW_IMAGE, smokeTest=SMOKE)
    world.smoke_outputs = [[0.9, 0.1]]
    weights = []
    for _ in range(5):
        world.reconcile(new)
        world.settle()
        weights.append(world.status.canary.weight if world.status.canary else 0)
    assert weights == [0] * 5
    progressing = condition(world.status, "Progressing")
    assert (
        progressing.reason == "SmokeTestFailed"
        and "expected 0.25 within tolerance 0.01" in progressing.message
    )


def bg(image: str | None = None, **blue_green: Any) -> api.ModelDeploymentSpec:
    body: dict[str, Any] = {
        "replicas": 2,
        "strategy": {"blueGreen": {"autoPromote": True, "abortScaleDownDelay": "0s", **blue_green}},
        "analysis": ANALYSIS,
    }
    if image:
        body["image"] = image
    return spec(**body)


def test_blue_green_with_a_failing_pre_promotion_analysis_never_switches() -> None:
    old = bg(prePromotionAnalysis=True)
    world = stable_world(old)
    new = bg(NEW_IMAGE, prePromotionAnalysis=True)
    world.metrics["errors"] = BAD_ERRORS
    actives = []
    for _ in range(6):
        world.reconcile(new)
        world.settle()
        actives.append(service_selector(world, new))
    assert set(actives) == {name_of(old)}
    assert condition(world.status, "Progressing").reason == "AnalysisFailed"
    assert world.status.stable_revision == name_of(old)


def test_blue_green_pre_promotion_analysis_gates_the_automatic_switch() -> None:
    old = bg(prePromotionAnalysis=True)
    world = stable_world(old)
    new = bg(NEW_IMAGE, prePromotionAnalysis=True)
    step(world, new)
    assert service_selector(world, new) == name_of(old)  # still measuring
    run_until(world, new, lambda s: s.stable_revision == name_of(new))
    assert world.status.analysis[0].kind == "prePromotion"  # type: ignore[index]


def test_blue_green_post_promotion_failure_switches_back_to_the_old_revision() -> None:
    old = bg(postPromotionAnalysis=True)
    world = stable_world(old)
    new = bg(NEW_IMAGE, postPromotionAnalysis=True)
    run_until(world, new, lambda s: s.blue_green is not None and s.blue_green.phase == "Switched")
    assert service_selector(world, new) == name_of(new)  # switched; the old one still up
    assert world.status.blue_green is not None
    assert replicas(world)[name_of(old)] == 2 and world.status.blue_green.phase in ("Switched", "Accepted")
    world.metrics["errors"] = BAD_ERRORS
    run_until(world, new, lambda s: s.aborted is not None, passes=5)
    assert service_selector(world, new) == name_of(old)
    assert world.status.stable_revision == name_of(old)


def test_blue_green_post_promotion_success_promotes() -> None:
    old = bg(postPromotionAnalysis=True)
    world = stable_world(old)
    new = bg(NEW_IMAGE, postPromotionAnalysis=True)
    run_until(world, new, lambda s: s.stable_revision == name_of(new))
    assert world.status.analysis[0].kind == "postPromotion"  # type: ignore[index]
    assert service_selector(world, new) == name_of(new)


def test_only_due_runs_of_the_current_canary_are_measured() -> None:
    slow = {**ANALYSIS, "interval": "30s"}
    world = stable_world(with_analysis(analysis=slow))
    new = with_analysis(NEW_IMAGE, analysis=slow)
    step(world, new)
    world.reconcile(new)  # less than an interval after the run started: nothing is due
    assert world.measured == []
    world.tick(30)
    world.reconcile(new)
    assert world.measured == ["step"]


def test_a_step_analysis_someone_promoted_past_is_measured_no_more() -> None:
    slow = {**ANALYSIS, "interval": "30s"}
    world = stable_world(with_analysis(analysis=slow))
    new = with_analysis(NEW_IMAGE, analysis=slow)
    step(world, new)
    assert world.status.canary is not None and world.status.canary.step == 1
    new, world.status = command("promote", new, world.status)
    world.tick(30)
    world.reconcile(new)  # on to setWeight 60 (its pods coming up): the step-1 run is left as it was
    assert world.status.canary is not None
    assert world.measured == [] and world.status.canary.step == 2
