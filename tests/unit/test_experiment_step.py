"""The `experiment` canary step: the candidate at a fixed weight beside stable, then a statistical
test decides; one test per outcome (better, worse, not enough data, still collecting, Prometheus
down), and what the shell is asked to count."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship import api, plugin
from modelship.core import experiment
from modelship.core.analysis import abtest
from modelship.core.analysis.verdicts import RawMeasurement

from .enginesim import World, command, spec

pytestmark = pytest.mark.unit

NEW_IMAGE = "registry.example/fraud@sha256:" + "c" * 64
TRIAL: dict[str, Any] = {"weight": 50, "duration": "10m", "metrics": [{"name": "accuracy"}]}


def trial_spec(image: str | None = None, trial: dict[str, Any] = TRIAL) -> api.ModelDeploymentSpec:
    fields: dict[str, Any] = {
        "replicas": 4,
        "strategy": {"canary": {"steps": [{"setWeight": 10}, {"experiment": trial}, {"pause": {}}]}},
        "traffic": {"router": "gatewayAPI", "httpRoute": "fraud"},
    }
    if image:
        fields["image"] = image
    return spec(**fields)


def rows(correct: int, of: int) -> tuple[float, float]:
    return float(of - correct), float(correct)


def accuracy(candidate: tuple[float, float], stable: tuple[float, float]) -> RawMeasurement:
    return RawMeasurement(sample=abtest.Sample(candidate, stable))


def started(trial: dict[str, Any] = TRIAL) -> tuple[World, api.ModelDeploymentSpec]:
    """A stable world, then the new image walked to its experiment step, whose run has started."""
    world = World()
    for _ in range(2):
        world.reconcile(trial_spec(trial=trial))
        world.settle()
    new = trial_spec(NEW_IMAGE, trial)
    for _ in range(4):
        world.reconcile(new)
        world.settle()
    return world, new


def run_of(world: World) -> api.AnalysisRun:
    return next(r for r in world.status.analysis or [] if r.kind == "experiment")


def condition(status: api.ModelDeploymentStatus, type_: str) -> api.Condition:
    return next(c for c in status.conditions or [] if c.type == type_)


def after(world: World, new: api.ModelDeploymentSpec, seconds: int) -> api.ModelDeploymentStatus:
    world.tick(seconds)
    return world.reconcile(new).status


def test_the_step_sets_its_weight_and_starts_counting_once_the_route_shows_it() -> None:
    world, _ = started()
    assert world.status.canary is not None
    assert (world.status.canary.step, world.status.canary.weight) == (1, 50)
    assert world.route is not None and world.route["fraud-canary"] == 50
    run = run_of(world)
    assert (run.phase, run.step) == ("Running", 1)
    assert "WeightChanged" in [e.reason for e in world.events]


def test_it_collects_until_its_duration_has_passed_and_holds_the_step() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(900, 1000), rows(800, 1000))
    status = after(world, new, 60)
    run = run_of(world)
    assert run.phase == "Running" and "collecting since" in run.message
    assert "accuracy 1000 vs 1000 samples" in run.message
    assert status.canary is not None and status.canary.step == 1 and status.canary.weight == 50
    assert not run.metrics[0].measurements  # nothing decided yet


def test_a_more_accurate_candidate_completes_the_step_with_its_figures_in_the_status() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(900, 1000), rows(800, 1000))
    status = after(world, new, 601)
    run = run_of(world)
    assert run.phase == "Successful"
    measured = run.metrics[0].measurements[-1]
    assert measured.verdict == "Successful" and measured.comparison is not None
    assert measured.comparison.outcome == "Better"
    assert measured.comparison.effect == pytest.approx(0.1)
    assert measured.comparison.p_value < 0.001 and measured.comparison.samples == 1000
    assert measured.value == pytest.approx(0.9) and measured.stable_value == pytest.approx(0.8)
    assert "accuracy: candidate better: 0.9 vs 0.8 (effect +0.1000, p = " in measured.message
    assert status.canary is not None and status.canary.step == 2  # on to the pause step
    assert "ExperimentSuccessful" in [e.reason for e in world.events]


def test_a_less_accurate_candidate_aborts_naming_the_metric_effect_and_p_value() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(800, 1000), rows(900, 1000))
    world.tick(601)
    decision = world.reconcile(new)
    status = decision.status
    assert status.phase == "Degraded" and status.aborted is not None
    assert status.aborted.reason == "ExperimentFailed"
    message = condition(status, "Progressing").message
    assert "step 2/3: accuracy: candidate worse: 0.8 vs 0.9 (effect -0.1000, p = " in message
    assert world.route is not None and world.route["fraud-canary"] == 0
    assert run_of(world).phase == "Failed"


def test_too_few_samples_pause_as_inconclusive_and_never_promote() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(18, 20), rows(17, 20))
    status = after(world, new, 601)
    assert status.phase == "Paused"
    paused = condition(status, "Paused")
    assert paused.reason == "ExperimentInconclusive"
    assert "not enough data: no difference shown, and the samples had power" in paused.message
    assert "`modelship promote` accepts it" in paused.message
    measured = run_of(world).metrics[0].measurements[-1]
    assert measured.verdict == "Inconclusive"
    assert measured.comparison is not None and measured.comparison.outcome == "NotEnoughData"
    stable = status.stable_revision
    for _ in range(3):  # waits for a person, however long
        status = after(world, new, 600)
        assert status.canary is not None and status.canary.step == 1
        assert (
            status.stable_revision == stable
            and condition(status, "Paused").reason == "ExperimentInconclusive"
        )
    # `modelship promote` accepts it: on to the next step
    _, world.status = command("promote", new, world.status)
    status = world.reconcile(new).status
    assert status.canary is not None and status.canary.step == 2


def test_abort_rolls_an_inconclusive_experiment_back() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(18, 20), rows(17, 20))
    after(world, new, 601)
    _, world.status = command("abort", new, world.status)
    status = world.reconcile(new).status
    assert status.aborted is not None and status.phase == "Degraded"
    assert world.route is not None and world.route["fraud-canary"] == 0


def test_equal_revisions_with_enough_samples_are_equivalent_and_pass() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(9000, 10000), rows(9010, 10000))
    status = after(world, new, 601)
    measured = run_of(world).metrics[0].measurements[-1]
    assert measured.comparison is not None and measured.comparison.outcome == "Equivalent"
    assert "no difference, and power" in measured.message
    assert status.canary is not None and status.canary.step == 2


def test_min_samples_alone_decides_once_each_revision_has_them() -> None:
    world, new = started({"weight": 20, "minSamples": 500, "metrics": [{"name": "accuracy"}]})
    world.metrics["accuracy"] = accuracy(rows(450, 499), rows(400, 800))
    after(world, new, 15)
    assert run_of(world).phase == "Running"
    assert "once each revision has 500 samples of every metric" in run_of(world).message
    world.metrics["accuracy"] = accuracy(rows(451, 500), rows(400, 800))
    after(world, new, 15)
    assert run_of(world).phase == "Successful"


def test_latency_a_slower_candidate_aborts() -> None:
    trial = {"duration": "1m", "metrics": [{"name": "latency", "minDetectableEffect": 0.2}]}
    world, new = started(trial)
    bounds = (0.01, 0.1, float("inf"))
    world.metrics["latency"] = RawMeasurement(
        sample=abtest.Sample((100.0, 700.0, 200.0), (600.0, 350.0, 50.0), bounds)
    )
    world.tick(61)
    status = world.reconcile(new).status
    assert status.aborted is not None and status.aborted.reason == "ExperimentFailed"
    assert "latency: candidate slower: median " in condition(status, "Progressing").message
    assert "Cliff's delta +" in condition(status, "Progressing").message


def test_prometheus_unreachable_pauses_the_experiment_and_it_goes_on_when_it_answers() -> None:
    world, new = started()
    world.metrics["accuracy"] = RawMeasurement(unreachable="Prometheus at http://p:9090 is unreachable")
    status = after(world, new, 601)
    assert condition(status, "Paused").reason == "PrometheusUnreachable"
    assert run_of(world).unreachable_since is not None
    world.metrics["accuracy"] = accuracy(rows(900, 1000), rows(800, 1000))
    status = after(world, new, 15)
    assert run_of(world).phase == "Successful" and run_of(world).unreachable_since is None
    assert status.canary is not None and status.canary.step == 2


def test_the_window_covers_the_experiment_from_its_start() -> None:
    world, _ = started()
    run = run_of(world)
    assert experiment.window(run, run.started_at + timedelta(minutes=10, milliseconds=1)) == "601s"
    assert experiment.window(run, run.started_at) == "1s"


def test_the_run_settings_share_the_analysis_prometheus_and_never_probe() -> None:
    trial = api.Experiment.model_validate(TRIAL)
    own = spec(
        analysis={
            "prometheus": {"address": "http://prom.ml:9090"},
            "unreachableTimeout": "3m",
            "consecutiveErrorLimit": 7,
            "metrics": [{"name": "errors", "template": "error-rate", "max": 0.01}],
        }
    )
    settings = experiment.analysis(own, trial)
    assert settings.prometheus is not None and settings.prometheus.address == "http://prom.ml:9090"
    assert settings.unreachable_timeout == "3m" and settings.consecutive_error_limit == 7
    assert settings.scrape_interval == settings.interval == experiment.LOOK
    assert [m.name for m in settings.metrics] == ["accuracy"]
    assert experiment.analysis(spec(), trial).prometheus is None


def test_the_api_defaults_and_bounds() -> None:
    trial = api.Experiment.model_validate({"duration": "1h"})
    assert (trial.weight, trial.confidence, trial.power) == (50, 0.95, 0.8)
    assert [m.name for m in trial.metrics] == ["accuracy"]
    assert experiment.min_detectable_effect(trial.metrics[0]) == 0.02
    latency = api.ExperimentMetric(name="latency")
    assert experiment.min_detectable_effect(latency) == 0.2
    for bad in ({"weight": 100}, {"weight": 0}, {"confidence": 1.0}, {"power": 0.3}, {"minSamples": 0}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            api.Experiment.model_validate({"duration": "1h", **bad})
    with pytest.raises(ValueError, match="name"):
        api.Experiment.model_validate({"duration": "1h", "metrics": [{"name": "errors"}]})


def test_the_docs_example_is_the_examples_experiment_step() -> None:
    root = Path(__file__).resolve().parents[2]
    section = (root / "docs" / "analysis.md").read_text().split("## Experiments", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    documented = api.Canary.model_validate(yaml.safe_load(block.group(1))["spec"]["strategy"]["canary"])
    example = api.ModelDeploymentSpec.model_validate(
        yaml.safe_load((root / "examples" / "experiment.yaml").read_text())["spec"]
    )
    assert documented.steps == example.strategy.steps
    trial = documented.steps[2].experiment
    assert trial is not None and [m.name for m in trial.metrics] == ["accuracy", "latency"]


def test_kubectl_modelship_status_shows_what_it_counted_and_then_each_metrics_finding() -> None:
    world, new = started()
    world.metrics["accuracy"] = accuracy(rows(900, 1000), rows(800, 1000))

    def shown() -> str:
        obj = {
            "metadata": {"name": "fraud", "namespace": "ml"},
            "spec": api.dump(new),
            "status": api.dump(world.status),
        }
        return plugin.render(obj, [])

    after(world, new, 60)
    assert "Analysis:   step 2 of " in shown() and ": Running\n  collecting since " in shown()
    assert "accuracy 1000 vs 1000 samples); decides at " in shown()
    after(world, new, 600)
    assert (
        "accuracy         1 ok, 0 failed, 0 inconclusive; Successful: accuracy: candidate better: 0.9 vs 0.8"
        in (shown())
    )


def test_queries_prometheus_refuses_five_looks_in_a_row_abort_the_experiment() -> None:
    world, new = started()
    world.metrics["accuracy"] = RawMeasurement(error="Prometheus answered HTTP 400 Bad Request: parse error")
    for _ in range(4):
        status = after(world, new, 10)
        assert status.aborted is None and run_of(world).phase == "Running"
    status = after(world, new, 10)
    assert status.aborted is not None and status.aborted.reason == "AnalysisError"
    assert "accuracy: query failed: Prometheus answered HTTP 400" in condition(status, "Progressing").message
    assert run_of(world).metrics[0].consecutive_errors == 5
