"""The experiment step's statistics (core.analysis.abtest), checked on seeded synthetic data whose
true effect is known: the false-positive rate stays at most alpha (plus the simulation's own
noise), and a true effect of the MDE is found at least as often as the stated power."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest

from modelship.core.analysis import abtest, templates

pytestmark = pytest.mark.unit

ALPHA, POWER, TRIALS = 0.05, 0.8, 400


def noise(rate: float) -> float:
    """Three standard errors of a rate estimated from TRIALS simulated experiments."""
    return 3 * math.sqrt(rate * (1 - rate) / TRIALS)


def rows(rng: random.Random, accuracy: float, n: int) -> tuple[float, float]:
    correct = sum(rng.random() < accuracy for _ in range(n))
    return float(n - correct), float(correct)


def rows_per_arm(baseline: float, mde: float) -> int:
    """The fewest rows per revision with which the test has POWER to show an `mde` drop."""
    n = 10
    while abtest.proportions_power(baseline, n, n, ALPHA, mde) < POWER:
        n += 10
    return n


def test_the_normal_quantile_inverts_the_cdf() -> None:
    assert abtest.normal_quantile(0.975) == pytest.approx(1.959964, abs=1e-6)
    assert abtest.normal_cdf(abtest.normal_quantile(0.2)) == pytest.approx(0.2, abs=1e-12)
    with pytest.raises(ValueError, match="between 0 and 1"):
        abtest.normal_quantile(1.0)


def test_accuracy_equal_revisions_are_called_different_at_most_alpha_of_the_time() -> None:
    # Twice the rows the MDE needs: the power at the stable revision's observed accuracy is then
    # clear of POWER, so "no difference" is Equivalent nearly every time.
    rng, n = random.Random(21), 2 * rows_per_arm(0.85, 0.05)
    outcomes = Counter(
        abtest.proportions(abtest.Sample(rows(rng, 0.85, n), rows(rng, 0.85, n)), ALPHA, 0.05, POWER).outcome
        for _ in range(TRIALS)
    )
    different = (outcomes["Better"] + outcomes["Worse"]) / TRIALS
    assert different <= ALPHA + noise(ALPHA)
    assert outcomes["Worse"] / TRIALS <= ALPHA / 2 + noise(ALPHA / 2)  # a good candidate is rarely aborted
    assert outcomes["Equivalent"] / TRIALS >= 1 - ALPHA - noise(ALPHA)


def test_accuracy_a_candidate_worse_by_the_mde_is_found_with_the_stated_power() -> None:
    rng, n = random.Random(4), rows_per_arm(0.85, 0.05)
    found = sum(
        abtest.proportions(abtest.Sample(rows(rng, 0.80, n), rows(rng, 0.85, n)), ALPHA, 0.05, POWER).outcome
        == "Worse"
        for _ in range(TRIALS)
    )
    assert found / TRIALS >= POWER - noise(POWER)


def test_accuracy_a_better_candidate_is_better_with_effect_and_p_value() -> None:
    result = abtest.proportions(abtest.Sample((100.0, 900.0), (200.0, 800.0)), ALPHA, 0.02, POWER)
    assert result.outcome == "Better"
    assert result.effect == pytest.approx(0.1)
    assert result.value == pytest.approx(0.9) and result.stable_value == pytest.approx(0.8)
    assert result.p_value < 1e-6 and result.samples == 1000 and result.stable_samples == 1000


def test_accuracy_too_few_rows_is_not_enough_data_never_equivalent() -> None:
    # 20 rows each, 85% vs 80%: no difference shown, and 20 rows could not show a 2-point one.
    result = abtest.proportions(abtest.Sample((3.0, 17.0), (4.0, 16.0)), ALPHA, 0.02, POWER)
    assert result.outcome == "NotEnoughData"
    assert result.p_value > ALPHA and result.power < POWER
    empty = abtest.proportions(abtest.Sample((0.0, 0.0), (4.0, 16.0)), ALPHA, 0.02, POWER)
    assert empty.outcome == "NotEnoughData" and empty.value is None


def test_accuracy_too_few_rows_of_one_kind_for_the_normal_approximation_is_not_enough_data() -> None:
    # 10 of 10 against 5 of 10 would be "Better" at p = 0.01 by the z-test, whose approximation
    # needs 5 expected incorrect rows per revision: here 2.5.
    result = abtest.proportions(abtest.Sample((0.0, 10.0), (5.0, 5.0)), ALPHA, 0.02, POWER)
    assert result.outcome == "NotEnoughData" and result.effect == pytest.approx(0.5)
    # Every row correct on both sides: nothing differs; enough rows make it Equivalent.
    same = abtest.proportions(abtest.Sample((0.0, 20000.0), (0.0, 20000.0)), ALPHA, 0.02, POWER)
    assert same.outcome == "Equivalent" and same.p_value == 1.0


def test_accuracy_power_grows_with_the_rows() -> None:
    small, large = (abtest.proportions_power(0.9, n, n, ALPHA, 0.03) for n in (100, 3000))
    assert small < 0.3 < POWER < large


# ---- latency --------------------------------------------------------------------------------

BOUNDS = (*templates.REQUEST_DURATION_BUCKETS, math.inf)


def lognormal_buckets(median: float, sigma: float) -> list[float]:
    """The probability of each request-duration bucket for a log-normal latency."""
    cdf = [
        0.5 * (1 + math.erf(math.log(b / median) / (sigma * math.sqrt(2)))) if math.isfinite(b) else 1.0
        for b in BOUNDS
    ]
    return [hi - lo for lo, hi in zip([0.0, *cdf[:-1]], cdf, strict=True)]


def true_delta(candidate: list[float], stable: list[float]) -> float:
    """Cliff's delta of two bucket distributions: P(candidate slower) - P(candidate faster)."""
    return sum(
        pc * ps * (1 if i > j else -1 if i < j else 0)
        for i, pc in enumerate(candidate)
        for j, ps in enumerate(stable)
    )


def requests(rng: random.Random, probabilities: list[float], n: int) -> tuple[float, ...]:
    drawn = Counter(rng.choices(range(len(probabilities)), weights=probabilities, k=n))
    return tuple(float(drawn[i]) for i in range(len(probabilities)))


def requests_per_arm(mde: float) -> int:
    n = 10
    while abtest.distributions_power(n, n, ALPHA, mde) < POWER:
        n += 10
    return n


STABLE = lognormal_buckets(0.02, 0.6)


def test_latency_equal_revisions_are_called_different_at_most_alpha_of_the_time() -> None:
    rng, n = random.Random(7), requests_per_arm(0.1)
    outcomes = Counter(
        abtest.distributions(
            abtest.Sample(requests(rng, STABLE, n), requests(rng, STABLE, n), BOUNDS), ALPHA, 0.1, POWER
        ).outcome
        for _ in range(TRIALS)
    )
    assert (outcomes["Better"] + outcomes["Worse"]) / TRIALS <= ALPHA + noise(ALPHA)
    assert outcomes["Worse"] / TRIALS <= ALPHA / 2 + noise(ALPHA / 2)


def test_latency_a_slower_candidate_by_the_mde_is_found_with_the_stated_power() -> None:
    slower = lognormal_buckets(0.02 * 1.15, 0.6)  # 15% slower, seen through the buckets
    mde = true_delta(slower, STABLE)
    assert 0.05 < mde < 0.3
    rng, n = random.Random(11), requests_per_arm(mde)
    found = sum(
        abtest.distributions(
            abtest.Sample(requests(rng, slower, n), requests(rng, STABLE, n), BOUNDS), ALPHA, mde, POWER
        ).outcome
        == "Worse"
        for _ in range(TRIALS)
    )
    assert found / TRIALS >= POWER - noise(POWER)


def test_latency_u_counts_slower_pairs_with_ties_as_halves() -> None:
    # Candidate: 1 request in bucket 0, 1 in bucket 1; stable: 2 in bucket 1.
    # Pairs: (b0, b1) faster twice, (b1, b1) tied twice: U = 1, Cliff's delta = 2 * 1/4 - 1.
    result = abtest.distributions(abtest.Sample((1.0, 1.0), (0.0, 2.0), (0.1, 0.2)), ALPHA, 0.1, POWER)
    assert result.effect == pytest.approx(-0.5)
    assert result.outcome == "NotEnoughData"  # 2 requests each prove nothing
    assert result.p_value == 1.0 and result.power == 0.0  # fewer than MIN_REQUESTS: no test at all
    faster = abtest.distributions(
        abtest.Sample((900.0, 100.0, 0.0), (100.0, 800.0, 100.0), (0.01, 0.1, math.inf)), ALPHA, 0.1, POWER
    )
    assert faster.outcome == "Better" and faster.effect < -0.5 and faster.p_value < 1e-9


def test_latency_all_in_one_bucket_shows_no_difference() -> None:
    result = abtest.distributions(abtest.Sample((0.0, 5000.0), (0.0, 5000.0), (0.1, 0.2)), ALPHA, 0.1, POWER)
    assert result.effect == 0 and result.p_value == 1.0
    assert result.outcome == "Equivalent"  # enough requests: a difference would have shown


def test_the_median_is_interpolated_inside_its_bucket() -> None:
    assert abtest.median((0.0, 10.0, 10.0), (0.01, 0.02, 0.04)) == pytest.approx(0.02)
    assert abtest.median((0.0, 20.0, 0.0), (0.01, 0.02, 0.04)) == pytest.approx(0.015)
    assert abtest.median((0.0, 0.0, 7.0), (0.01, 0.02, math.inf)) == pytest.approx(0.02)
    assert abtest.median((0.0, 0.0), (0.01, 0.02)) is None


def test_cumulative_histograms_become_counts_per_bucket_on_shared_bounds() -> None:
    sample = abtest.histograms(
        {"0.01": 5.0, "0.1": 8.0, "+Inf": 10.0},
        {"0.01": 1.0, "0.05": 3.0, "0.1": 3.0, "+Inf": 4.0},
    )
    assert sample.bounds == (0.01, 0.05, 0.1, math.inf)
    assert sample.candidate == (5.0, 0.0, 3.0, 2.0)  # 0.05 missing: its count is 0.01's
    assert sample.stable == (1.0, 2.0, 0.0, 1.0)
    reset = abtest.histograms({"0.01": 5.0, "0.1": 4.0, "+Inf": 6.0}, {"+Inf": 0.0})
    assert reset.candidate == (5.0, 0.0, 1.0)  # a falling cumulative count is no negative bucket
