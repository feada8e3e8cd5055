"""Fast failing: the statistical rule (`stats`), the look cadence (`cadence`) and the engine's probes.

The simulations are seeded: the same numbers every run. They feed a run's looks the way
Prometheus would (k errors of n requests in the sliding window, one new scrape every 2 s) and
judge each look with the real `verdicts.judge` at the real `cadence.z`.
"""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
from datetime import datetime, timedelta
from typing import Any

import pytest

from modelship import api
from modelship.core import engine
from modelship.core.analysis import cadence, stats, templates
from modelship.core.analysis.cadence import Scrape
from modelship.core.analysis.verdicts import RawMeasurement, judge

from .enginesim import T0, World
from .test_analysis_engine import ANALYSIS, with_analysis
from .test_canary import NEW_IMAGE, condition, stable_world, step

pytestmark = pytest.mark.unit

SCRAPE = Scrape(timedelta(seconds=2), last=T0, duration=timedelta(milliseconds=10))


def analysis(**fields: Any) -> api.Analysis:
    body: dict[str, Any] = {
        "interval": "5s",
        "minRequests": 0,
        "metrics": [{"name": "errors", "template": "error-rate", "max": 0.05}],
        **fields,
    }
    return api.Analysis.model_validate(body)


# --- stats -------------------------------------------------------------------------------------


def test_the_exact_bounds_match_the_textbook_clopper_pearson_values() -> None:
    # 95% two-sided, 2.5% each side: 0 of 10 -> 0 to 0.3085; 5 of 10 -> 0.1871 to 0.8129.
    assert stats.bounds(stats.Tally(0, 10), 0.025) == (0.0, pytest.approx(0.3085, abs=1e-4))
    lower, upper = stats.bounds(stats.Tally(5, 10), 0.025)
    assert (lower, upper) == (pytest.approx(0.1871, abs=1e-4), pytest.approx(0.8129, abs=1e-4))


def test_the_binomial_tail_is_the_incomplete_beta_function() -> None:
    # P(X >= 3) for X ~ Bin(16, 0.05), summed directly.
    tail = sum(math.comb(16, i) * 0.05**i * 0.95 ** (16 - i) for i in range(3, 17))
    assert stats.betainc(3, 14, 0.05) == pytest.approx(tail, rel=1e-9)
    assert stats.above(stats.Tally(3, 16), 0.05, alpha=tail * 1.01)
    assert not stats.above(stats.Tally(3, 16), 0.05, alpha=tail * 0.99)
    assert not stats.above(stats.Tally(0, 1000), 0.05, alpha=0.5)  # no events: never above
    # P(X <= 0) for X ~ Bin(5, 0.6) = 0.4^5 ~ 0.0102: accuracy 0 of 5 is below 0.6 at 2%, not at 1%.
    assert stats.below(stats.Tally(0, 5), 0.6, alpha=0.02)
    assert not stats.below(stats.Tally(0, 5), 0.6, alpha=0.01)


def test_the_shares_of_alpha_over_all_slots_add_up_to_alpha_and_shrink() -> None:
    shares = [stats.alpha_for(0.05, s) for s in range(1, 100_001)]
    assert sum(shares) < 0.05 and sum(shares) == pytest.approx(0.05, rel=1e-4)
    assert shares == sorted(shares, reverse=True)


def test_a_slot_is_one_cadence_counted_from_the_runs_start() -> None:
    every = timedelta(seconds=2)
    assert stats.slot(T0, T0, every) == 1
    assert stats.slot(T0, T0 + timedelta(seconds=1.9), every) == 1
    assert stats.slot(T0, T0 + timedelta(seconds=2), every) == 2
    assert stats.slot(T0, T0 - timedelta(seconds=5), every) == 1  # data from before the run
    with pytest.raises(ValueError, match="cadence"):
        stats.slot(T0, T0, timedelta(0))


# --- the verdict of one look -------------------------------------------------------------------


def errors(k: float, n: float) -> RawMeasurement:
    return RawMeasurement(k / n if n else None, requests=n, tally=stats.Tally(k, n))


def test_a_rate_beyond_its_limit_beyond_doubt_fails_and_names_the_evidence() -> None:
    a = analysis()
    verdict, message = judge(a.metrics[0], a, errors(8, 26), alpha=0.02)
    assert verdict == "Failed"
    assert "errors = 0.3077 is above max 0.05 beyond doubt (8 of 26: its rate is 0.13" in message
    assert "at 98% confidence" in message


def test_one_error_in_five_requests_is_not_enough_to_fail_it_is_inconclusive() -> None:
    a = analysis()
    verdict, message = judge(a.metrics[0], a, errors(1, 5), alpha=0.02)
    assert verdict == "Inconclusive"
    assert "above max 0.05, but 5 requests are too few to be sure" in message


def test_without_a_tally_the_point_value_decides_as_before() -> None:
    a = analysis()
    assert judge(a.metrics[0], a, RawMeasurement(0.3, requests=3), alpha=0.02)[0] == "Failed"
    custom = analysis(metrics=[{"name": "errors", "query": "vector(0.3)", "max": 0.05}])
    assert judge(custom.metrics[0], custom, errors(1, 3), alpha=0.02)[0] == "Failed"  # no rule for it


def test_a_rate_within_its_bounds_succeeds_only_once_its_requests_show_it() -> None:
    a = analysis(minRequests=None)  # no floor: the statistics decide, at the run's confidence
    verdict, message = judge(a.metrics[0], a, errors(0, 20))
    assert verdict == "Inconclusive" and "20 requests are too few to be sure" in message
    assert judge(a.metrics[0], a, errors(0, 100))[0] == "Successful"  # 0 of 100: below 5% at 95%
    p99 = analysis(minRequests=None, metrics=[{"name": "p99", "template": "latency-p99", "max": 0.25}])
    assert judge(p99.metrics[0], p99, RawMeasurement(0.01, tally=stats.Tally(0, 20)))[0] == "Successful"
    floored = analysis(minRequests=10)  # a floor set by the user: past it, the value decides
    assert judge(floored.metrics[0], floored, errors(0, 20))[0] == "Successful"


def test_accuracy_fails_once_its_upper_bound_is_below_min() -> None:
    a = analysis(metrics=[{"name": "acc", "template": "accuracy", "min": 0.6}])
    assert (
        judge(a.metrics[0], a, RawMeasurement(0.0, tally=stats.Tally(0, 2)), alpha=0.02)[0] == "Inconclusive"
    )
    verdict, message = judge(a.metrics[0], a, RawMeasurement(0.0, tally=stats.Tally(0, 5)), alpha=0.02)
    assert verdict == "Failed" and "below min 0.6 beyond doubt" in message


def test_a_latency_quantile_is_tallied_as_the_share_slower_than_the_bucket_at_its_max() -> None:
    rule = templates.tally_rule("latency-p99", 0.25, None)
    assert rule is not None and rule.above == pytest.approx(0.01) and rule.below is None
    events, requests = templates.tally_queries(rule, namespace="ns", name="m", revision="m-1", window="60s")
    assert 'le="0.25"' in events and 'le="+Inf"' in events and 'le="+Inf"' in requests
    between = templates.tally_rule("latency-p95", 0.3, None)  # no bucket at 0.3: the next one up
    assert between is not None and 'le="0.5"' in between.events
    assert templates.tally_rule("latency-p99", 60.0, None) is None  # beyond the largest bucket
    assert templates.tally_rule("latency-p99", None, 0.1) is None  # a floor on latency: no rule
    assert templates.tally_rule("confidence-mean", 0.9, None) is None
    assert templates.tally_rule(None, 0.1, None) is None  # custom queries: the value decides


def test_the_operators_buckets_are_the_serving_images() -> None:
    import json
    from pathlib import Path

    contract = Path(__file__).resolve().parents[2] / "serving-image/modelserver/metrics_contract.json"
    metrics = json.loads(contract.read_text())["metrics"]
    duration = next(m for m in metrics if m["name"] == "modelserver_request_duration_seconds")
    assert tuple(duration["buckets"]) == templates.REQUEST_DURATION_BUCKETS


# --- the cadence of looks ----------------------------------------------------------------------


def run_at(started: datetime, *values: float | None) -> api.AnalysisRun:
    measurements = [
        api.Measurement(verdict="Successful", value=v, measured_at=started + timedelta(seconds=5 * (i + 1)))
        for i, v in enumerate(values)
    ]
    return api.AnalysisRun(
        kind="step",
        revision="fraud-2",
        step=1,
        started_at=started,
        metrics=[api.MetricStatus(name="errors", measurements=measurements)],
    )


def test_a_run_probes_at_the_scrape_cadence_in_its_first_window_only() -> None:
    a = analysis()  # window: 60s (the interval, at least 1m)
    run = run_at(T0, 0.0)
    assert cadence.fast(run, a, T0 + timedelta(seconds=59), SCRAPE)
    assert not cadence.fast(run, a, T0 + timedelta(seconds=60), SCRAPE)


def test_a_run_probes_again_while_a_value_is_near_its_limit() -> None:
    a = analysis()
    later = T0 + timedelta(seconds=90)
    assert cadence.fast(run_at(T0, 0.0, 0.041), a, later, SCRAPE)  # within 20% of max 0.05
    assert not cadence.fast(run_at(T0, 0.041, 0.01), a, later, SCRAPE)  # the latest is far
    acc = analysis(metrics=[{"name": "errors", "template": "accuracy", "min": 0.6}])
    assert cadence.fast(run_at(T0, 0.7), acc, later, SCRAPE)
    assert not cadence.fast(run_at(T0, 0.9), acc, later, SCRAPE)


def test_no_probes_without_a_scrape_faster_than_the_interval_or_once_the_run_ended() -> None:
    a = analysis()
    soon = T0 + timedelta(seconds=1)
    assert not cadence.fast(run_at(T0), a, soon, None)  # scrape interval not known
    assert not cadence.fast(run_at(T0), a, soon, Scrape(timedelta(seconds=15)))  # slower than 5s
    assert cadence.fast(run_at(T0), analysis(scrapeInterval="1s"), soon, None)  # the setting
    ended = run_at(T0).model_copy(update={"phase": "Failed"})
    assert not cadence.fast(ended, a, soon, SCRAPE)


def test_the_next_look_lands_just_after_the_next_scrape() -> None:
    a = analysis()
    landed = T0 + SCRAPE.duration + cadence.MARGIN
    assert cadence.next_look(a, SCRAPE, T0 + timedelta(seconds=0.1)) == landed
    assert cadence.next_look(a, SCRAPE, landed) == landed + timedelta(seconds=2)
    assert cadence.next_look(a, SCRAPE, T0 + timedelta(seconds=7)) == landed + timedelta(seconds=8)
    assert cadence.next_look(a, None, T0) == T0 + timedelta(seconds=5)  # no scrape known: the interval


def test_the_next_look_is_after_the_passes_own_time_not_its_whole_second() -> None:
    a = analysis()
    landed = T0 + SCRAPE.duration + cadence.MARGIN  # T0 + 0.11 s, then every 2 s
    seen = dataclasses.replace(SCRAPE, seen_at=T0 + timedelta(seconds=2.5))  # now: T0 + 2 s
    assert cadence.next_look(a, seen, T0 + timedelta(seconds=2)) == landed + timedelta(seconds=4)
    assert cadence.next_look(a, SCRAPE, T0 + timedelta(seconds=2)) == landed + timedelta(seconds=2)


def test_looks_between_two_scrapes_share_one_slot_of_the_budget() -> None:
    a, run = analysis(), run_at(T0)
    first = T0 + timedelta(seconds=2.3)
    same = cadence.alpha(run, a, SCRAPE, first + timedelta(seconds=1.5))
    assert cadence.alpha(run, a, SCRAPE, first) == same
    assert cadence.alpha(run, a, SCRAPE, first) > cadence.alpha(run, a, SCRAPE, first + timedelta(seconds=2))


def test_the_budget_is_spent_from_the_first_look_that_read_requests() -> None:
    a, run = analysis(), run_at(T0)
    late = T0 + timedelta(seconds=8.3)  # the fifth scrape since the run started
    assert cadence.with_data(run, a, SCRAPE, [None, stats.Tally(0, 0)], late) == run  # nothing yet
    seen = cadence.with_data(run, a, SCRAPE, [stats.Tally(1, 3)], late)
    assert seen.data_since == T0 + timedelta(seconds=8) + SCRAPE.duration + cadence.MARGIN
    assert cadence.with_data(seen, a, SCRAPE, [stats.Tally(5, 9)], late + timedelta(seconds=2)) == seen
    first = 1 - a.confidence
    assert cadence.alpha(run, a, SCRAPE, late) == stats.alpha_for(first, 5)  # counted from the start
    assert cadence.alpha(seen, a, SCRAPE, late) == stats.alpha_for(first, 1)  # from the first data
    assert cadence.alpha(seen, a, SCRAPE, late + timedelta(seconds=2)) == stats.alpha_for(first, 2)


# --- seeded simulations: false failures and detection time -------------------------------------


def simulate(rate: float, rps: float, seed: int, seconds: int = 180) -> float | None:
    """Seconds from a canary's first request to the first look that fails it (None: never), for a
    run whose looks are every scrape (2 s) in its first minute and every interval (5 s) after,
    each judged on the last minute's requests (the window)."""
    rng = random.Random(seed)
    a = analysis()
    limit, every = a.metrics[0].max or 0.0, SCRAPE.interval.total_seconds()
    window = int(api.parse_duration("60s").total_seconds() / every)
    per_scrape = rps * every
    requests, events = [], []
    run = run_at(T0)
    for k in range(1, int(seconds / every) + 1):
        n = int(per_scrape) + (rng.random() < per_scrape % 1)
        requests.append(n)
        events.append(sum(rng.random() < rate for _ in range(n)))
        at = T0 + timedelta(seconds=k * every) + SCRAPE.duration + cadence.MARGIN
        if not (cadence.fast(run, a, at, SCRAPE) or (k * every) % 5 < every):
            continue
        tally = stats.Tally(sum(events[-window:]), sum(requests[-window:]))
        run = cadence.with_data(run, a, SCRAPE, [tally], at)
        # What `judge` fails on (its own tests above): the rate above max beyond doubt.
        if stats.above(tally, limit, cadence.alpha(run, a, SCRAPE, at)):
            return k * every
    return None


def test_a_good_canary_exactly_at_the_limit_is_failed_by_chance_at_most_alpha_of_the_time() -> None:
    alpha = 1 - analysis().confidence
    runs = 300
    failed = sum(simulate(0.05, 8, seed, seconds=120) is not None for seed in range(runs))
    assert failed / runs <= alpha


def test_a_good_canary_below_its_limit_is_never_failed() -> None:
    assert all(simulate(0.01, 8, seed, seconds=120) is None for seed in range(100))


DETECTION: dict[tuple[float, float], float] = {}


def detection_median(rate: float, rps: float) -> float:
    if (rate, rps) not in DETECTION:
        times = [simulate(rate, rps, seed, seconds=60) for seed in range(40)]
        DETECTION[rate, rps] = statistics.median(t if t is not None else math.inf for t in times)
    return DETECTION[rate, rps]


@pytest.mark.parametrize(("rate", "rps", "within"), [(0.31, 8, 4), (1.0, 8, 2), (0.31, 40, 2), (0.15, 8, 12)])
def test_a_bad_canary_is_failed_within_a_few_scrapes(rate: float, rps: float, within: float) -> None:
    """The demo's v3-bad-errors answers ~31% errors; at 20% of 40 rps it sees 8 rps."""
    assert detection_median(rate, rps) <= within


def test_detection_is_faster_with_a_worse_rate_or_more_traffic() -> None:
    assert detection_median(1.0, 8) <= detection_median(0.31, 8) <= detection_median(0.15, 8)
    assert detection_median(0.31, 40) <= detection_median(0.31, 8) <= detection_median(0.31, 2)


# --- the engine: probes ------------------------------------------------------------------------


def look(world: World, s: api.ModelDeploymentSpec, seconds: int) -> engine.Decision:
    """One pass `seconds` after the last (World.reconcile would move the clock 5 s on)."""
    world.tick(seconds)
    decision = world.decide(s)
    world.apply(decision)
    return decision


def tallied(k: float, n: float) -> RawMeasurement:
    return RawMeasurement(k / n, requests=n, tally=stats.Tally(k, n))


def fast_spec(image: str | None = None) -> api.ModelDeploymentSpec:
    # Measured every 30 s, probed every second; `step` leaves the run 5 s old.
    return with_analysis(
        image, analysis={**ANALYSIS, "interval": "30s", "minRequests": 0, "scrapeInterval": "1s"}
    )


def test_a_probe_in_the_first_window_fails_a_bad_canary_before_its_interval() -> None:
    world = stable_world(fast_spec())
    new = fast_spec(NEW_IMAGE)
    step(world, new)
    assert world.status.analysis and world.status.analysis[0].phase == "Running"
    world.metrics["errors"] = tallied(8, 26)
    decision = look(world, new, 1)  # 6 s into a 30 s interval
    assert decision.status.aborted is not None and decision.status.aborted.reason == "AnalysisFailed"
    assert "beyond doubt" in condition(decision.status, "Progressing").message


def test_a_probe_that_fails_nothing_beyond_doubt_leaves_the_run_as_it_was() -> None:
    world = stable_world(fast_spec())
    new = fast_spec(NEW_IMAGE)
    step(world, new)
    before = world.status.analysis
    world.metrics["errors"] = tallied(1, 5)  # above the limit, not beyond doubt
    world.measured.clear()
    look(world, new, 1)
    assert world.measured == ["step"]  # it looked...
    assert before and world.status.analysis  # ...and recorded nothing but when its data began:
    since = world.status.analysis[0].data_since
    assert since is not None
    assert world.status.analysis == [before[0].model_copy(update={"data_since": since})]


def test_probes_never_promote_success_still_takes_count_measurements_at_the_interval() -> None:
    world = stable_world(fast_spec())
    new = fast_spec(NEW_IMAGE)
    step(world, new)
    for _ in range(4):  # four good probes, one second apart
        look(world, new, 1)
    run = world.status.analysis[0]  # type: ignore[index]
    assert world.measured.count("step") == 4
    assert run.phase == "Running" and all(m.successful == 0 for m in run.metrics)
    look(world, new, 21)  # the interval's first regular measurement
    assert all(m.successful == 1 for m in world.status.analysis[0].metrics)  # type: ignore[index]


def test_a_probing_run_asks_to_be_woken_just_after_the_next_scrape() -> None:
    world = stable_world(fast_spec())
    new = fast_spec(NEW_IMAGE)
    step(world, new)
    world.scrape = Scrape(timedelta(seconds=1), last=world.now - timedelta(seconds=0.5))
    decision = world.decide(new)
    assert decision.wake_at == world.now + timedelta(seconds=0.5) + cadence.MARGIN


def test_a_run_in_its_first_window_asks_again_soon_for_a_scrape_timing_not_known_yet() -> None:
    a, run = analysis(), run_at(T0)
    soon = T0 + timedelta(seconds=3)
    assert cadence.wake(run, a, None, soon) == soon + cadence.RETRY  # its pods not yet a target
    assert cadence.wake(run, a, SCRAPE, soon) == cadence.next_look(a, SCRAPE, soon)  # probing
    assert cadence.wake(run, a, None, T0 + timedelta(seconds=61)) is None  # past the window: the interval
    assert cadence.wake(run, analysis(scrapeInterval="10s"), None, soon) is None  # set, and not fast


def test_a_proportion_is_judged_from_its_tally_before_rate_has_two_samples() -> None:
    a = analysis()
    verdict, message = judge(a.metrics[0], a, RawMeasurement(None, tally=stats.Tally(10, 30)), alpha=0.02)
    assert verdict == "Failed" and "errors = 0.3333 is above max 0.05 beyond doubt" in message
    p99 = analysis(metrics=[{"name": "p99", "template": "latency-p99", "max": 0.25}])
    # A tail share is not the quantile: no value, no verdict from it (noData decides).
    assert judge(p99.metrics[0], p99, RawMeasurement(None, tally=stats.Tally(10, 30)))[0] == "Inconclusive"


def test_a_tally_counts_a_new_series_whole_and_an_old_one_since_the_window_began() -> None:
    rule = templates.tally_rule("error-rate", 0.05, None)
    assert rule is not None
    _, requests = templates.tally_queries(rule, namespace="ns", name="m", revision="m-1", window="60s")
    labels = 'namespace="ns", revision="m-1", route=~"/predict|/v2/models/{name}/infer"'
    series = f"modelserver_requests_total{{{labels}}}"
    assert requests == f"sum(clamp_min({series} - {series} offset 60s, 0) or {series})"
