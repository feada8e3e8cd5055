"""The `experiment` canary step, pure: an analysis run of kind `experiment` that compares the
candidate with the stable revision (or a challenger: a second candidate, `challenger_of`) by a
statistical test (`analysis.abtest`) instead of limits.

The step sets the candidate's weight as a setWeight step would; once the router shows it the run
starts, and its start opens the window both revisions are counted over (feedback rows for
accuracy, request-duration buckets for latency: `templates.EXPERIMENT_*`). Every `LOOK` the shell
reads the counts of both revisions since then. The run is decided once, at the first look where
`duration` has passed and each revision has `minSamples` of every metric:

- a metric whose candidate is Worse: Failed (the rollout aborts, `ExperimentFailed`; against a
  challenger `ExperimentLost`, naming it: the spec's image is never swapped for it);
- else a metric with NotEnoughData: Inconclusive (paused, `ExperimentInconclusive`: never promotes);
- else (Better or Equivalent on every metric): Successful, the step completes.

One look, one test: the error rates hold because the data is not tested again and again while it
comes in. Prometheus unreachable holds the run (paused) up to `unreachableTimeout`, as an analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from modelship import api
from modelship.core import revisions
from modelship.core.analysis import abtest, runs
from modelship.core.analysis.verdicts import RawMeasurement

KIND: api.RunKind = "experiment"
LOOK = "10s"  # how often a running experiment's counts are read
_VERDICTS: dict[abtest.Outcome, api.Verdict] = {
    "Better": "Successful",
    "Equivalent": "Successful",
    "Worse": "Failed",
    "NotEnoughData": "Inconclusive",
}


def step_of(spec: api.ModelDeploymentSpec, step: int | None) -> api.Experiment | None:
    steps = spec.strategy.steps
    return steps[step].experiment if step is not None and 0 <= step < len(steps) else None


def challenger_template(
    spec: api.ModelDeploymentSpec, experiment: api.Experiment
) -> api.RevisionTemplate | None:
    """The challenger's pods: the spec's revision with the challenger's image (and model)."""
    rival = experiment.challenger
    if rival is None:
        return None
    template = revisions.template_of(spec)
    return template.model_copy(update={"image": rival.image, "model": rival.model or template.model})


def challenger_of(
    spec: api.ModelDeploymentSpec, owner_name: str, step: int | None
) -> tuple[str, api.RevisionTemplate] | None:
    """The challenger revision the experiment step `step` runs, and its pods; None: no such step, or
    it has no challenger."""
    trial = step_of(spec, step)
    template = challenger_template(spec, trial) if trial is not None else None
    return (revisions.revision_name(owner_name, template), template) if template is not None else None


def lost(experiment: api.Experiment, run: api.AnalysisRun) -> str:
    """Why a candidate lost to the challenger (`ExperimentLost`): the challenger that won and the tests."""
    assert experiment.challenger is not None
    return f"challenger {experiment.challenger.image} ({run.baseline}) is better: {run.message}"


def analysis(spec: api.ModelDeploymentSpec, experiment: api.Experiment) -> api.Analysis:
    """The run's settings for the machinery all runs share (when to look, the Prometheus to ask,
    how long an outage may last): one metric per compared one, a look every LOOK."""
    settings = api.Analysis(
        interval=LOOK,
        scrape_interval=LOOK,  # never probes at the scrape cadence: it decides once
        count=1,
        confidence=experiment.confidence,
        # Named only, for the status's per-metric tallies: the shell counts them (`measure.experiment`).
        metrics=[api.Metric(name=m.name) for m in experiment.metrics],
    )
    own = spec.analysis
    if own is None:
        return settings
    return settings.model_copy(
        update={
            "prometheus": own.prometheus,
            "unreachable_timeout": own.unreachable_timeout,
            "consecutive_error_limit": own.consecutive_error_limit,
        }
    )


def analysis_of(spec: api.ModelDeploymentSpec, run: api.AnalysisRun) -> api.Analysis | None:
    experiment = step_of(spec, run.step)
    return analysis(spec, experiment) if experiment is not None else None


def window(run: api.AnalysisRun, now: datetime) -> str:
    """The PromQL range from the run's start to `now`: what both revisions are counted over."""
    return f"{max(1, math.ceil((now - run.started_at).total_seconds()))}s"


def min_detectable_effect(metric: api.ExperimentMetric) -> float:
    if metric.min_detectable_effect is not None:
        return metric.min_detectable_effect
    return api.DEFAULT_MIN_DETECTABLE_EFFECT[metric.name]


def compare(
    metric: api.ExperimentMetric, sample: abtest.Sample, experiment: api.Experiment
) -> abtest.Comparison:
    test = abtest.proportions if metric.name == "accuracy" else abtest.distributions
    return test(sample, 1 - experiment.confidence, min_detectable_effect(metric), experiment.power)


def _empty(metric: api.ExperimentMetric) -> abtest.Sample:
    return abtest.Sample((0.0, 0.0), (0.0, 0.0)) if metric.name == "accuracy" else abtest.Sample((), ())


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def describe(metric: api.ExperimentMetric, result: abtest.Comparison, experiment: api.Experiment) -> str:
    """One metric's finding as people read it: outcome, values, effect, p-value, samples, power."""
    latency = metric.name == "latency"
    unit = " s" if latency else ""
    values = (
        f"{'median ' if latency else ''}{_fmt(result.value)}{unit} vs {_fmt(result.stable_value)}{unit}"
        if result.value is not None and result.stable_value is not None
        else "no data"
    )
    effect = f"Cliff's delta {result.effect:+.3f}" if latency else f"effect {result.effect:+.4f}"
    figures = (
        f"{values} ({effect}, p = {result.p_value:.3g}; {result.samples:.0f} vs {result.stable_samples:.0f} "
        f"samples)"
    )
    mde = _fmt(min_detectable_effect(metric))
    said = {
        "Better": "candidate faster" if latency else "candidate better",
        "Worse": "candidate slower" if latency else "candidate worse",
        "Equivalent": f"no difference, and power {result.power:.2f} to show one of {mde}",
        "NotEnoughData": (
            f"not enough data: no difference shown, and the samples had power {result.power:.2f} "
            f"(< {experiment.power:g}) to show one of {mde}"
        ),
    }[result.outcome]
    return f"{metric.name}: {said}: {figures}"


def record(
    run: api.AnalysisRun,
    experiment: api.Experiment,
    settings: api.Analysis,
    measured: Mapping[str, RawMeasurement],
    now: datetime,
) -> api.AnalysisRun:
    """The run after one look at both revisions' counts: still collecting, or decided."""
    run = run.model_copy(update={"last_measured_at": now})
    blind = [raw.unreachable for raw in measured.values() if raw.unreachable is not None]
    if blind:
        since = run.unreachable_since or now
        limit = api.parse_duration(settings.unreachable_timeout)
        if now - since >= limit:
            return run.model_copy(
                update={
                    "unreachable_since": since,
                    "phase": "Unreachable",
                    "message": f"Prometheus unreachable for {api.format_duration(now - since)} "
                    f"(unreachableTimeout {settings.unreachable_timeout}): {blind[0]}"[:1024],
                }
            )
        message = (
            f"Prometheus unreachable since {since:%H:%M:%SZ}: {blind[0]}; continues when it answers, rolls "
            f"back if it is still unreachable at {since + limit:%H:%M:%SZ}"
        )
        return run.model_copy(update={"unreachable_since": since, "message": message[:1024]})
    run = run.model_copy(update={"unreachable_since": None})
    refused = {name: raw.error for name, raw in measured.items() if raw.error is not None}
    if refused:
        return _refused(run, refused, settings.consecutive_error_limit, now)
    samples = {m.name: measured[m.name].sample if m.name in measured else None for m in experiment.metrics}
    counted: dict[str, abtest.Sample] = {m.name: samples[m.name] or _empty(m) for m in experiment.metrics}
    waiting = _waiting(run, experiment, counted, now)
    if waiting is not None:
        return run.model_copy(update={"message": waiting[:1024]})
    return _decided(run, experiment, counted, now)


def _refused(run: api.AnalysisRun, refused: Mapping[str, str], limit: int, now: datetime) -> api.AnalysisRun:
    """A look whose queries Prometheus refused: an Error measurement; more than `limit` in a row
    end the run (Error: the rollout aborts, the experiment's queries are wrong)."""
    metrics, worst = [], 0
    for status in run.metrics:
        why = refused.get(status.name)
        if why is None:
            metrics.append(status)
            continue
        error = api.Measurement(
            verdict="Error", message=f"{status.name}: query failed: {why}"[:512], measured_at=now
        )
        status = status.model_copy(
            update={
                "errors": status.errors + 1,
                "consecutive_errors": status.consecutive_errors + 1,
                "measurements": [*status.measurements, error][-10:],
            }
        )
        worst = max(worst, status.consecutive_errors)
        metrics.append(status)
    first = next(iter(refused.items()))
    message = f"{first[0]}: query failed: {first[1]}"
    phase = "Error" if worst > limit else "Running"
    if phase == "Error":
        message += f" ({worst} errors in a row)"
    return run.model_copy(update={"metrics": metrics, "phase": phase, "message": message[:1024]})


def _waiting(
    run: api.AnalysisRun, experiment: api.Experiment, counted: Mapping[str, abtest.Sample], now: datetime
) -> str | None:
    """Why the experiment is not decided yet (its duration, its samples), or None once it is due."""
    ends = run.started_at + api.parse_duration(experiment.duration) if experiment.duration else None
    least = experiment.min_samples or 0
    short = {
        name: (sum(s.candidate), sum(s.stable))
        for name, s in counted.items()
        if min(sum(s.candidate), sum(s.stable)) < least
    }
    if (ends is None or now >= ends) and not short:
        return None
    seen = ", ".join(
        f"{name} {sum(s.candidate):.0f} vs {sum(s.stable):.0f} samples" for name, s in counted.items()
    )
    until = [f"at {ends:%H:%M:%SZ}"] if ends is not None and now < ends else []
    if short:
        until.append(f"once each revision has {least} samples of every metric")
    return f"collecting since {run.started_at:%H:%M:%SZ} ({seen}); decides " + " and ".join(until)


def _decided(
    run: api.AnalysisRun, experiment: api.Experiment, counted: Mapping[str, abtest.Sample], now: datetime
) -> api.AnalysisRun:
    by_name = {m.name: m for m in run.metrics}
    metrics, found = [], []
    for metric in experiment.metrics:
        result = compare(metric, counted[metric.name], experiment)
        verdict, message = _VERDICTS[result.outcome], describe(metric, result, experiment)
        found.append((result.outcome, message))
        measurement = api.Measurement(
            verdict=verdict,
            value=result.value,
            stable_value=result.stable_value,
            message=message[:512],
            measured_at=now,
            comparison=api.Comparison(
                outcome=result.outcome,
                samples=result.samples,
                stable_samples=result.stable_samples,
                effect=_finite(result.effect),
                p_value=result.p_value,
                power=result.power,
            ),
        )
        before = by_name.get(metric.name, api.MetricStatus(name=metric.name))
        metrics.append(
            before.model_copy(
                update={
                    "successful": before.successful + (verdict == "Successful"),
                    "failed": before.failed + (verdict == "Failed"),
                    "inconclusive": before.inconclusive + (verdict == "Inconclusive"),
                    "consecutive_errors": 0,
                    "measurements": [*before.measurements, measurement][-runs.KEEP :],
                }
            )
        )
    worse = [m for outcome, m in found if outcome == "Worse"]
    unsure = [m for outcome, m in found if outcome == "NotEnoughData"]
    phase, shown = ("Failed", worse) if worse else ("Inconclusive", unsure) if unsure else ("Successful", [])
    message = "; ".join(shown or [m for _, m in found])
    return run.model_copy(update={"metrics": metrics, "phase": phase, "message": message[:1024]})


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0
