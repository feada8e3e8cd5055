"""analysis.verdicts and analysis.runs: every verdict rule and every limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelship import api
from modelship.core.analysis import runs
from modelship.core.analysis.stats import Tally
from modelship.core.analysis.verdicts import RawMeasurement, judge

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def analysis(*metrics: dict[str, Any], **fields: Any) -> api.Analysis:
    body: dict[str, Any] = {
        "metrics": list(metrics) or [{"name": "errors", "template": "error-rate", "max": 0.05}]
    }
    return api.Analysis.model_validate({**body, **fields})


ERRORS = {"name": "errors", "template": "error-rate", "max": 0.05}
ACCURACY = {"name": "accuracy", "template": "accuracy", "min": 0.8, "maxDropVsStable": 0.02}
LATENCY = {"name": "p99", "template": "latency-p99", "max": 1.0, "maxIncreaseVsStable": 0.1}
PLENTY = 1000.0


def verdict(metric: dict[str, Any], raw: RawMeasurement, **fields: Any) -> tuple[str, str]:
    a = analysis(metric, **fields)
    return judge(a.metrics[0], a, raw)


@pytest.mark.parametrize(
    ("metric", "raw", "fields", "expected", "words"),
    [
        (ERRORS, RawMeasurement(0.01, requests=PLENTY), {}, "Successful", ["errors = 0.01", "max 0.05"]),
        (ERRORS, RawMeasurement(0.3, requests=PLENTY), {}, "Failed", ["errors = 0.3", "above max 0.05"]),
        (ACCURACY, RawMeasurement(0.5, 0.9, PLENTY), {}, "Failed", ["accuracy = 0.5", "below min 0.8"]),
        (ACCURACY, RawMeasurement(0.85, 0.9, PLENTY), {}, "Failed", ["0.05 below", "maxDropVsStable 0.02"]),
        (ACCURACY, RawMeasurement(0.89, 0.9, PLENTY), {}, "Successful", ["stable 0.9"]),
        (LATENCY, RawMeasurement(0.5, 0.02, PLENTY), {}, "Failed", ["0.48 above", "maxIncreaseVsStable 0.1"]),
        (LATENCY, RawMeasurement(0.05, 0.02, PLENTY), {}, "Successful", []),
        (
            ERRORS,
            RawMeasurement(None, requests=PLENTY),
            {},
            "Inconclusive",
            ["no data", "noData: inconclusive"],
        ),
        (ERRORS, RawMeasurement(None, requests=PLENTY), {"noData": "fail"}, "Failed", ["noData: fail"]),
        (ERRORS, RawMeasurement(None, requests=PLENTY), {"noData": "pass"}, "Successful", ["noData: pass"]),
        (
            ERRORS,
            RawMeasurement(0.0, requests=3),
            {"minRequests": 50},
            "Inconclusive",
            ["3 requests", "minRequests 50"],
        ),
        (
            ERRORS,
            RawMeasurement(0.0, tally=Tally(0, 3)),
            {},
            "Inconclusive",
            ["3 requests are too few to be sure"],
        ),
        (ERRORS, RawMeasurement(0.0, tally=Tally(0, 200)), {}, "Successful", ["within max 0.05"]),
        (ERRORS, RawMeasurement(0.0, requests=None), {"noData": "fail"}, "Failed", ["0 requests"]),
        (ERRORS, RawMeasurement(0.0, requests=None), {"minRequests": 0}, "Successful", []),
        (
            ACCURACY,
            RawMeasurement(0.9, None, PLENTY),
            {},
            "Inconclusive",
            ["no data for the stable revision"],
        ),
        (
            ERRORS,
            RawMeasurement(unreachable="connection refused"),
            {},
            "Inconclusive",
            ["not measured", "refused"],
        ),
        (ERRORS, RawMeasurement(error="bad_data: parse error"), {}, "Error", ["query failed", "parse error"]),
    ],
)
def test_each_rule_gives_its_verdict_and_names_metric_value_and_threshold(
    metric: dict[str, Any], raw: RawMeasurement, fields: dict[str, Any], expected: str, words: list[str]
) -> None:
    got, message = verdict(metric, raw, **fields)
    assert got == expected, message
    for word in words:
        assert word in message


def test_an_unreachable_prometheus_is_inconclusive_even_with_nodata_fail() -> None:
    # Not seeing is not the canary's fault: it must never roll back (or pass) a good canary.
    assert verdict(ERRORS, RawMeasurement(unreachable="timed out"), noData="fail")[0] == "Inconclusive"


def round_of(a: api.Analysis, run: api.AnalysisRun, now: datetime, **raws: RawMeasurement) -> api.AnalysisRun:
    return runs.record(run, a, raws, now)


def test_a_run_measures_first_after_initial_delay_plus_interval_then_every_interval() -> None:
    a = analysis(ERRORS, interval="5s", initialDelay="10s")
    run = runs.start("step", "r1", 1, a, T0)
    assert runs.next_at(run, a) == T0 + timedelta(seconds=15)
    assert not runs.due(run, a, T0 + timedelta(seconds=14))
    run = round_of(a, run, T0 + timedelta(seconds=16), errors=RawMeasurement(0.0, requests=PLENTY))
    assert runs.next_at(run, a) == T0 + timedelta(seconds=21)


def test_a_run_succeeds_after_count_successful_measurements_of_every_metric() -> None:
    a = analysis(ERRORS, LATENCY, count=2, interval="5s")
    run = runs.start("step", "r1", 1, a, T0)
    good = {"errors": RawMeasurement(0.0, requests=PLENTY), "p99": RawMeasurement(0.01, 0.01, PLENTY)}
    run = runs.record(run, a, good, T0 + timedelta(seconds=5))
    assert run.phase == "Running" and "1/2 successful" in run.message
    run = runs.record(run, a, good, T0 + timedelta(seconds=10))
    assert run.phase == "Successful"
    assert runs.next_at(run, a) is None
    assert [m.successful for m in run.metrics] == [2, 2]


def test_failure_limit_tolerates_that_many_failures_then_fails_naming_the_metric() -> None:
    a = analysis(ERRORS, failureLimit=1, count=5)
    run = runs.start("step", "r1", 1, a, T0)
    bad = {"errors": RawMeasurement(0.4, requests=PLENTY)}
    run = runs.record(run, a, bad, T0 + timedelta(seconds=30))
    assert run.phase == "Running"
    run = runs.record(run, a, bad, T0 + timedelta(seconds=60))
    assert run.phase == "Failed"
    assert (
        "errors = 0.4" in run.message and "above max 0.05" in run.message and "failureLimit 1" in run.message
    )


def test_consecutive_errors_past_the_limit_end_the_run_in_error_and_a_success_resets_them() -> None:
    a = analysis(ERRORS, consecutiveErrorLimit=1, count=10)
    run = runs.start("step", "r1", 1, a, T0)
    err = {"errors": RawMeasurement(error="bad_data")}
    ok = {"errors": RawMeasurement(0.0, requests=PLENTY)}
    for i, raws in enumerate([err, ok, err]):
        run = runs.record(run, a, raws, T0 + timedelta(seconds=30 * (i + 1)))
        assert run.phase == "Running"
    run = runs.record(run, a, err, T0 + timedelta(seconds=120))
    assert run.phase == "Error" and "consecutiveErrorLimit 1" in run.message


def test_inconclusive_past_the_limit_ends_the_run_inconclusive() -> None:
    a = analysis(ERRORS, inconclusiveLimit=2)
    run = runs.start("step", "r1", 1, a, T0)
    none = {"errors": RawMeasurement(None, requests=PLENTY)}
    for i in range(2):
        run = runs.record(run, a, none, T0 + timedelta(seconds=30 * (i + 1)))
        assert run.phase == "Running"
        assert runs.inconclusive_now(run, a) is not None
    run = runs.record(run, a, none, T0 + timedelta(seconds=90))
    assert run.phase == "Inconclusive" and "inconclusiveLimit 2" in run.message


def test_dry_run_metrics_are_recorded_but_never_decide() -> None:
    a = analysis(ERRORS, {**LATENCY, "dryRun": True}, count=1)
    run = runs.start("step", "r1", 1, a, T0)
    run = runs.record(
        run, a, {"errors": RawMeasurement(0.0, requests=PLENTY), "p99": RawMeasurement(9.0, 0.0, PLENTY)}, T0
    )
    assert run.phase == "Successful"
    assert run.metrics[1].failed == 1


def test_a_background_run_never_succeeds_by_count() -> None:
    a = analysis(ERRORS, count=1)
    run = runs.start("background", "r1", None, a, T0)
    run = runs.record(run, a, {"errors": RawMeasurement(0.0, requests=PLENTY)}, T0 + timedelta(seconds=30))
    assert run.phase == "Running"


def test_the_status_keeps_the_last_measurements_with_timestamps() -> None:
    a = analysis(ERRORS, count=100)
    run = runs.start("step", "r1", 1, a, T0)
    for i in range(runs.KEEP + 3):
        run = runs.record(
            run, a, {"errors": RawMeasurement(i / 1000, requests=PLENTY)}, T0 + timedelta(minutes=i)
        )
    kept = run.metrics[0].measurements
    assert len(kept) == runs.KEEP
    assert kept[-1].value == (runs.KEEP + 2) / 1000 and kept[-1].measured_at == T0 + timedelta(
        minutes=runs.KEEP + 2
    )
    assert run.metrics[0].successful == runs.KEEP + 3


def test_a_missing_measurement_counts_as_inconclusive() -> None:
    a = analysis(ERRORS)
    run = runs.record(runs.start("step", "r1", 1, a, T0), a, {}, T0)
    assert run.metrics[0].measurements[-1].verdict == "Inconclusive"


def test_window_defaults_to_the_interval_but_at_least_1m() -> None:
    assert runs.window(analysis(interval="5s")) == "60s"
    assert runs.window(analysis(interval="2m")) == "120s"
    assert runs.window(analysis(interval="5s", window="1m")) == "1m"
