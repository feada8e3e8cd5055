"""The `evaluation` canary step, pure: an analysis run of kind `evaluation` whose one metric is
measured by a Job that runs the revision's own image as `modelserver evaluate`.

The Job is the canary's pod (its image, model volume and environment, so `--dataset bundle`
finds the bundle's `holdout.json` beside the model), with the server's command swapped for
`evaluate --url http://<name>-canary's address` and no labels a Service selects: it is no replica.
It scores the canary through `<name>-canary` (and, for `maxDropVsStable`/`maxIncreaseVsStable`,
stable through `<name>-stable` on the same rows) and reports by the Job result contract
(`core.jobs`). The score is judged by `verdicts.judge` with the step's limits, like any job
metric's (no request floor: the dataset says how many rows are enough).
"""

from __future__ import annotations

from modelship import api
from modelship.core import experiment, jobs, manifests
from modelship.core.analysis.verdicts import RawMeasurement

KIND: api.RunKind = "evaluation"
PURPOSE = "evaluation"
INTERVAL = "2s"  # how often a pass looks at the running Job
DATASET_MOUNT = "/dataset"
EVALUATED_LABEL = "modelship.io/evaluated-revision"


def step_of(spec: api.ModelDeploymentSpec, step: int | None) -> api.EvaluationStep | None:
    steps = spec.strategy.canary.steps if spec.strategy.canary is not None else []
    return steps[step].evaluation if step is not None and 0 <= step < len(steps) else None


def analysis(step: api.EvaluationStep) -> api.Analysis:
    """The run's settings: one measurement decides (no retries: a Job that fails has failed)."""
    metric = api.Metric(
        name=step.metric,
        provider="job",  # its Job is its own (`job`): the shell runs it, not `metric.job`
        min=step.min,
        max=step.max,
        max_drop_vs_stable=step.max_drop_vs_stable,
        max_increase_vs_stable=step.max_increase_vs_stable,
    )
    return api.Analysis(
        interval=INTERVAL,
        count=1,
        failure_limit=0,
        inconclusive_limit=0,
        consecutive_error_limit=0,
        no_data="fail",
        metrics=[metric],
    )


def analysis_of(spec: api.ModelDeploymentSpec, run: api.AnalysisRun) -> api.Analysis | None:
    """The settings a run is measured and judged by: its evaluation or experiment step's, or
    `spec.analysis`."""
    if run.kind == KIND:
        step = step_of(spec, run.step)
        return analysis(step) if step is not None else None
    if run.kind == experiment.KIND:
        return experiment.analysis_of(spec, run)
    return spec.analysis


def job_name(owner: manifests.Owner, run: api.AnalysisRun) -> str:
    return jobs.job_name(owner.name, PURPOSE, run.revision, run.step, f"{run.started_at:%Y%m%dT%H%M%SZ}")


def job(
    owner: manifests.Owner,
    spec: api.ModelDeploymentSpec,
    template: api.RevisionTemplate,
    run: api.AnalysisRun,
) -> manifests.Manifest | None:
    """The evaluation Job of `run` (of the revision `template` renders); None when the run's step
    is no evaluation step any more."""
    step = step_of(spec, run.step)
    if step is None:
        return None
    pod, container = jobs.revision_pod(owner, run.revision, template)
    args = ["evaluate", "--url", jobs.service_url(f"{owner.name}-canary"), "--metric", step.metric]
    if step.max_drop_vs_stable is not None or step.max_increase_vs_stable is not None:
        args += ["--compare-url", jobs.service_url(f"{owner.name}-stable")]
    dataset = step.dataset
    if dataset.uri is not None:
        args += ["--dataset", dataset.uri, "--dataset-sha256", dataset.sha256 or ""]
    elif dataset.claim_name is not None:
        pod["spec"]["volumes"].append(
            {"name": "dataset", "persistentVolumeClaim": {"claimName": dataset.claim_name, "readOnly": True}}
        )
        container["volumeMounts"].append({"name": "dataset", "mountPath": DATASET_MOUNT, "readOnly": True})
        args += ["--dataset", f"{DATASET_MOUNT}/{dataset.path}"]
    else:
        args += ["--dataset", "bundle"]
    container["args"] = [*args, "--result-file", jobs.RESULT_PATH]
    deadline = int(api.parse_duration(step.timeout).total_seconds())
    return jobs.render(owner, job_name(owner, run), PURPOSE, pod, deadline, {EVALUATED_LABEL: run.revision})


def measurement(observed: jobs.JobObservation) -> RawMeasurement | None:
    """The measurement a finished evaluation Job gives (None while it runs): its score, stable's,
    and the examples scored (shown as the measurement's requests). A Job that failed (it could not
    score, it ran out of time) is an error: with no score there is nothing to judge."""
    result = jobs.result(observed)
    if result is None:
        return None
    if not result.passed or result.error is not None:
        why = result.error or "the evaluation Job failed"
        return RawMeasurement(error=f"the evaluation Job {observed.name} failed: {why}")
    examples = result.shown.get("examples")
    scored = float(examples) if isinstance(examples, (int, float)) and not isinstance(examples, bool) else 0.0
    return RawMeasurement(value=result.value, stable_value=result.stable_value, requests=scored)
