"""A Prometheus outage during an analysis run (analysis.runs, with a clock): the run waits without
promoting, goes on when Prometheus answers, and ends Unreachable after `unreachableTimeout`;
unreachable measurements never count toward `inconclusiveLimit`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelship import api
from modelship.core.analysis import runs
from modelship.core.analysis.verdicts import RawMeasurement

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, 12, tzinfo=UTC)
INTERVAL = 30  # seconds
DOWN = RawMeasurement(unreachable="Prometheus at http://prometheus:9090 is unreachable: [Errno 111] Refused")
GOOD = RawMeasurement(0.0, requests=1000.0)
QUIET = RawMeasurement(None, requests=1000.0)  # Prometheus answered: no value (noData: inconclusive)
ERRORS = {"name": "errors", "template": "error-rate", "max": 0.05}
LATENCY = {"name": "p99", "template": "latency-p99", "max": 1.0}


def analysis(**fields: Any) -> api.Analysis:
    body: dict[str, Any] = {"interval": f"{INTERVAL}s", "count": 3, "metrics": [ERRORS]}
    return api.Analysis.model_validate({**body, **fields})


class Run:
    """One run measured every interval; the status goes through its JSON form between rounds, as
    it does through the API server (an operator restart reads back only what was written)."""

    def __init__(self, a: api.Analysis) -> None:
        self.analysis = a
        self.run = runs.start("step", "fraud-5c1e0b7f2a", 1, a, T0)
        self.rounds = 0

    @property
    def now(self) -> datetime:
        return T0 + timedelta(seconds=INTERVAL * self.rounds)

    def measure(self, times: int = 1, **raws: RawMeasurement) -> api.AnalysisRun:
        for _ in range(times):
            self.rounds += 1
            assert runs.due(self.run, self.analysis, self.now)
            recorded = runs.record(self.run, self.analysis, raws or {"errors": DOWN}, self.now)
            self.run = api.AnalysisRun.model_validate(api.dump(recorded))
        return self.run


def test_an_outage_past_inconclusive_limit_waits_without_promoting_and_the_run_goes_on_when_it_is_back() -> (
    None
):
    r = Run(analysis())  # inconclusiveLimit 3 (the default)
    r.measure(errors=GOOD)
    for _ in range(4):  # more rounds than inconclusiveLimit allows inconclusive ones in a row
        run = r.measure(errors=DOWN)
        assert run.phase == "Running", run.message
        assert run.unreachable_since == T0 + timedelta(seconds=2 * INTERVAL)
        assert run.metrics[0].consecutive_inconclusive == 0  # not seeing is not the canary's fault
        assert "Prometheus unreachable since 12:01:00Z" in run.message
        assert "http://prometheus:9090 is unreachable" in run.message
        assert "rolls back if it is still unreachable at 12:11:00Z (unreachableTimeout 10m)" in run.message
        assert run.metrics[0].measurements[-1].verdict == "Inconclusive"
    run = r.measure(errors=GOOD)
    assert (run.phase, run.unreachable_since) == ("Running", None)
    assert "2/3 successful" in run.message
    assert r.measure(errors=GOOD).phase == "Successful"


def test_an_outage_longer_than_unreachable_timeout_ends_the_run_unreachable_saying_for_how_long() -> None:
    r = Run(analysis(unreachableTimeout="4m"))
    r.measure(errors=GOOD, times=2)  # a count of 3 is one success away: the outage must not pass it
    phases: list[str] = []
    while r.run.phase == "Running" and len(phases) < 10:  # ten intervals of outage, at most
        phases.append(r.measure(errors=DOWN).phase)
    # The first unreachable round starts the clock; the ninth is 4 minutes after it.
    assert phases == ["Running"] * 8 + ["Unreachable"]
    run = r.run
    assert run.phase == "Unreachable" and runs.next_at(run, r.analysis) is None
    assert run.message.startswith("Prometheus unreachable for 4m (unreachableTimeout 4m): Prometheus at")
    assert "[Errno 111]" in run.message


def test_the_outage_clock_starts_again_when_prometheus_answers() -> None:
    r = Run(analysis(unreachableTimeout="2m", count=10))
    for _ in range(3):  # three outages of three rounds, each under 2m, together over it
        for _ in range(3):
            run = r.measure(errors=DOWN)
            assert run.phase == "Running", run.message
        assert run.unreachable_since == r.now - timedelta(seconds=2 * INTERVAL)
        run = r.measure(errors=GOOD)
        assert (run.phase, run.unreachable_since) == ("Running", None)
    assert r.measure(errors=DOWN, times=5).phase == "Unreachable"  # 2m from the latest first round


def test_too_little_data_still_honours_inconclusive_limit_and_an_outage_neither_counts_nor_resets_it() -> (
    None
):
    r = Run(analysis(inconclusiveLimit=2))
    r.measure(errors=QUIET, times=2)
    assert r.run.metrics[0].consecutive_inconclusive == 2
    run = r.measure(errors=DOWN, times=5)
    assert run.phase == "Running" and run.metrics[0].consecutive_inconclusive == 2
    run = r.measure(errors=QUIET)
    assert run.phase == "Inconclusive" and "inconclusiveLimit 2" in run.message
    assert "3 inconclusive in a row" in run.message


def test_consecutive_errors_are_neither_counted_nor_reset_by_an_outage() -> None:
    r = Run(analysis(consecutiveErrorLimit=1))
    broken = RawMeasurement(error="bad_data: parse error")
    r.measure(errors=broken)
    assert r.measure(errors=DOWN, times=3).metrics[0].consecutive_errors == 1
    assert r.measure(errors=broken).phase == "Error"


def test_a_round_that_could_not_read_one_metric_does_not_succeed() -> None:
    r = Run(analysis(metrics=[ERRORS, LATENCY], count=1))
    run = r.measure(errors=GOOD, p99=DOWN)
    assert run.phase == "Running" and run.unreachable_since == r.now
    assert r.measure(errors=GOOD, p99=GOOD).phase == "Successful"


def test_a_failure_seen_during_a_partial_outage_still_fails_the_run() -> None:
    r = Run(analysis(metrics=[ERRORS, LATENCY]))
    run = r.measure(errors=RawMeasurement(0.4, requests=1000.0), p99=DOWN)
    assert run.phase == "Failed" and "errors = 0.4" in run.message


def test_a_dry_run_metric_prometheus_could_not_read_starts_no_outage() -> None:
    r = Run(analysis(metrics=[ERRORS, {**LATENCY, "dryRun": True}], count=1))
    run = r.measure(errors=GOOD, p99=DOWN)
    assert (run.phase, run.unreachable_since) == ("Successful", None)


def test_unreachable_timeout_defaults_to_10m_and_must_be_a_duration() -> None:
    assert analysis().unreachable_timeout == "10m"
    with pytest.raises(ValidationError, match="unreachableTimeout") as raised:
        analysis(unreachableTimeout="ten minutes")
    assert "must be a duration such as 30s" in str(raised.value)


def test_an_unreachable_timeout_of_0s_ends_the_run_at_its_first_unreachable_measurement() -> None:
    run = Run(analysis(unreachableTimeout="0s")).measure(errors=DOWN)
    assert run.phase == "Unreachable" and run.message.startswith("Prometheus unreachable for 0s")
