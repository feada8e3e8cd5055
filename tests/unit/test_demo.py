"""The demo's pure parts: its settings, its acts, the progress line and the summary."""

from __future__ import annotations

import pytest

from demo import progress
from demo.acts import Act, acts
from demo.settings import Settings, SettingsError, from_env
from modelship.api import ModelDeploymentSpec

pytestmark = pytest.mark.unit


def test_defaults_play_the_good_rollout_then_the_bad_one() -> None:
    settings = from_env({})
    assert settings == Settings()
    assert [a.number for a in acts(settings)] == [1, 2]
    assert [a.number for a in acts(from_env({"DEMO_ACTS": "1"}))] == [1]


def test_knobs_are_read_and_bad_ones_name_the_variable() -> None:
    s = from_env({"DEMO_ACTS": "2", "DEMO_BAD": "v3-slow", "DEMO_STEP_SECONDS": "3", "DEMO_RATE": "50"})
    assert (s.acts, s.bad, s.step_seconds, s.rate) == (2, "v3-slow", 3.0, 50.0)
    for env, message in [
        ({"DEMO_ACTS": "3"}, "DEMO_ACTS=3 must be between 1 and 2"),
        ({"DEMO_ACTS": "1.5"}, "DEMO_ACTS=1.5 must be a whole number"),
        ({"DEMO_BAD": "v4"}, "DEMO_BAD='v4' must be one of v3-bad-errors, v3-slow, v3-inaccurate"),
        ({"DEMO_STEP_SECONDS": "soon"}, "DEMO_STEP_SECONDS='soon' is not a number"),
        ({"DEMO_RATE": "inf"}, "DEMO_RATE=inf must be between 1 and 200"),
    ]:
        with pytest.raises(SettingsError, match=message):
            from_env(env)


def spec_of(act: Act) -> ModelDeploymentSpec:
    """The act's steps and analysis, as the operator's own API model validates them."""
    spec = {
        "model": {"name": "risk", "version": act.to_image, "sha256": "a" * 64},
        "image": "localhost/modelship/modelserver@sha256:" + "b" * 64,
        "replicas": 2,
        "strategy": {"canary": {"steps": act.steps}},
        "traffic": {"router": "gatewayAPI", "httpRoute": "risk", "parentRefs": [{"name": "local-gateway"}]},
    }
    if act.analysis is not None:
        spec["analysis"] = act.analysis
    return ModelDeploymentSpec.model_validate(spec)


def test_acts_are_valid_model_deployments_and_the_bad_one_is_judged_by_the_builtin_templates() -> None:
    good, bad = acts(Settings(acts=2, bad="v3-inaccurate", step_seconds=10))
    assert (good.from_image, good.to_image, good.expect, good.expected_stable) == (
        "v1",
        "v2",
        "Healthy",
        "v2",
    )
    assert (bad.from_image, bad.to_image, bad.expect, bad.expected_stable) == (
        "v2",
        "v3-inaccurate",
        "Degraded",
        "v2",
    )
    assert {"pause": {"duration": "10s"}} in good.steps
    spec_of(good)
    spec = spec_of(bad)
    assert spec.analysis is not None
    assert {m.template for m in spec.analysis.metrics} == {"error-rate", "latency-p99", "accuracy"}
    assert any(s.analysis is not None for s in spec.strategy.canary.steps)  # type: ignore[union-attr]


def test_steps_are_announced_compactly() -> None:
    good, bad = acts(Settings(acts=2, step_seconds=4))
    assert progress.describe_steps(good.steps) == "20% -> pause 4s -> 50% -> pause 4s -> 80% -> pause 4s"
    assert progress.describe_steps(bad.steps) == "20% -> analysis -> 50% -> analysis"
    assert progress.describe_steps([{"pause": {}}]) == "pause"


def test_vectors_drop_no_data_and_combine_into_per_revision_stats() -> None:
    def sample(rev: str, value: str) -> dict[str, object]:
        return {"metric": {"revision": rev}, "value": [0, value]}

    rates = progress.vector([sample("r1", "16"), sample("r2", "4")])
    p99s = progress.vector([sample("r1", "0.004"), sample("r2", "NaN")])
    assert p99s == {"r1": 0.004}
    stats = progress.combine(rates, errors={"r2": 1.0}, p99s=p99s, correct={"r1": 9}, scored={"r1": 10})
    assert stats["r1"] == progress.RevisionStats(rate=16, error_ratio=0.0, p99=0.004, accuracy=0.9)
    assert stats["r2"] == progress.RevisionStats(rate=4, error_ratio=0.25, p99=None, accuracy=None)


def test_progress_line_shows_step_weight_phase_and_each_revision_stable_first() -> None:
    act = acts(Settings())[0]
    status = {
        "phase": "Paused",
        "stableRevision": "r1",
        "rollout": {"canary": {"revision": "r2", "step": 1, "weight": 20}},
    }
    stats = {
        "r1": progress.RevisionStats(rate=16.04, error_ratio=0.0, p99=0.0061, accuracy=0.889),
        "r2": progress.RevisionStats(rate=4.0, error_ratio=0.3, p99=0.51),
    }
    line = progress.progress_line(12.3, act, status, {"r1": "v1", "r2": "v2"}, stats)
    assert line == (
        "   12s  act 1  step   1/6  canary  20%  Paused       "
        "|  v1  16.0/s err  0.0% p99    6ms acc 0.89  |  v2   4.0/s err 30.0% p99  510ms"
    )
    quiet = progress.progress_line(0, act, {"stableRevision": "r1"}, {}, {})
    assert quiet == "    0s  act 1  step     -  canary   0%  Pending      |  r1 no traffic"


def test_summary_says_how_each_act_ended_and_whether_that_was_expected() -> None:
    good, bad = acts(Settings(acts=2))
    results = [
        progress.ActResult(good, "Healthy", 61.2, "v2", 1200, 0),
        progress.ActResult(bad, "Paused", 30.0, "v2", 600, 170),
    ]
    lines = progress.summary_lines(results, planned=2)
    assert "  act 1: a good rollout: v1 -> v2: Healthy in 61s, v2 serves all traffic; as expected" in lines
    assert any("act 2" in line and "NOT as expected (wanted Degraded)" in line for line in lines)
    assert "         600 requests through the gateway, 170 failed" in lines
    assert lines[-1] == "  1/2 acts ended as expected"
    assert "  stopped after 1 of 2 acts" in progress.summary_lines(results[:1], planned=2)


def test_a_rolled_back_act_prints_its_verdicts_and_how_long_the_bad_canary_served() -> None:
    bad = acts(Settings())[1]
    verdicts = ["step analysis: Failed: error-rate = 0.3 is above max 0.05", "AnalysisFailed: step 2/4: ..."]
    result = progress.ActResult(bad, "Degraded", 40.0, "v2", 800, 60, verdicts, rollback_seconds=7.25)
    assert result.as_expected
    assert progress.act_end_lines(result) == [
        "  step analysis: Failed: error-rate = 0.3 is above max 0.05",
        "  AnalysisFailed: step 2/4: ...",
        "  rolled back 7.2s after the canary's first request (first bad request -> canary weight 0)",
    ]
    assert "         the bad canary served users for 7.2s before its weight was 0" in progress.summary_lines(
        [result], planned=2
    )
