"""The pure side of the Jobs a rollout runs: names, manifests, and the result contract."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from modelship import api
from modelship.core import jobs
from modelship.core.analysis import verdicts
from modelship.core.jobs import JobObservation, JobResult
from modelship.core.manifests import MODEL_LABEL, Owner

pytestmark = pytest.mark.unit

OWNER = Owner(name="fraud", namespace="ml", uid="u-1")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_job_name_is_stable_for_its_key_and_fits_a_label() -> None:
    a = jobs.job_name("fraud", "evaluation", "fraud-3f2a9c1", 0)
    assert a == jobs.job_name("fraud", "evaluation", "fraud-3f2a9c1", 0)
    assert a.startswith("fraud-evaluation-")
    assert a != jobs.job_name("fraud", "evaluation", "fraud-3f2a9c1", 1)
    long = jobs.job_name("x" * 80, "metric", "rev")
    assert len(long) == jobs.MAX_NAME and long.endswith(jobs.job_name("x", "metric", "rev")[1:])


def test_the_job_runs_its_pod_once_owned_by_the_model_deployment() -> None:
    pod = {"metadata": {"labels": {"app": "eval"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}
    job = jobs.render(OWNER, "fraud-metric-1", "metric", pod, 300, {"modelship.io/revision": "r1"})
    assert job["kind"] == "Job" and job["apiVersion"] == "batch/v1"
    assert job["metadata"]["namespace"] == "ml"
    assert job["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert job["metadata"]["labels"][jobs.JOB_LABEL] == "metric"
    assert job["metadata"]["labels"]["modelship.io/revision"] == "r1"
    spec = job["spec"]
    assert (spec["backoffLimit"], spec["activeDeadlineSeconds"]) == (0, 300)
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["metadata"]["labels"] == {"app": "eval", jobs.JOB_LABEL: "metric"}
    assert job["metadata"]["labels"][MODEL_LABEL] == "fraud"
    assert pod["spec"] == {"containers": [{"name": "c", "image": "i"}]}  # the template is not changed


def test_a_running_job_has_no_result() -> None:
    assert jobs.result(JobObservation("j", "Running")) is None


@pytest.mark.parametrize(
    ("observed", "expected"),
    [
        # exit 0 and nothing written: passed, no value
        (JobObservation("j", "Succeeded", 0, ""), JobResult(True)),
        (JobObservation("j", "Failed", 1, ""), JobResult(False, error="exit code 1")),
        (
            JobObservation("j", "Succeeded", 0, '{"value": 0.93}\n'),
            JobResult(True, value=0.93),
        ),
        (
            JobObservation(
                "j", "Succeeded", 0, '{"metric":"accuracy","value":0.81,"stable_value":0.84,"examples":400}'
            ),
            JobResult(True, 0.81, 0.84, None, {"metric": "accuracy", "examples": 400}),
        ),
        # FallbackToLogsOnError: the log's last line
        (
            JobObservation("j", "Succeeded", 0, 'scoring 400 rows\n{"value": 1}'),
            JobResult(True, value=1.0),
        ),
        (
            JobObservation("j", "Failed", 6, '{"error": "POST http://x/predict answered 503"}'),
            JobResult(False, error="POST http://x/predict answered 503"),
        ),
        (
            JobObservation("j", "Succeeded", 0, "done"),
            JobResult(True, error="the termination message is not a JSON object: 'done'"),
        ),
        (
            JobObservation("j", "Succeeded", 0, '{"value": "high"}'),
            JobResult(True, error="the result's 'value' is not a finite number: 'high'"),
        ),
        (
            JobObservation("j", "Succeeded", 0, '{"value": true}'),
            JobResult(True, error="the result's 'value' is not a finite number: True"),
        ),
        # killed before its container ended
        (
            JobObservation("j", "Failed", None, "", "DeadlineExceeded: Job was active longer than specified"),
            JobResult(False, error="DeadlineExceeded: Job was active longer than specified"),
        ),
    ],
)
def test_the_result_contract(observed: JobObservation, expected: JobResult) -> None:
    assert jobs.result(observed) == expected


# ---- job metrics: the Job of a round, and how its report is judged ---------------------------------

CHECK = {"spec": {"containers": [{"name": "check", "image": "registry.example/check@sha256:" + "a" * 64}]}}


def job_metric(**limits: float) -> api.Metric:
    return api.Metric.model_validate(
        {"name": "check", "provider": "job", "job": {"template": CHECK}, **limits}
    )


def analysis(metric: api.Metric, **fields: Any) -> api.Analysis:
    return api.Analysis.model_validate({"metrics": [api.dump(metric)], **fields})


def test_each_round_of_a_job_metric_is_its_own_job_told_what_it_checks() -> None:
    metric = job_metric()
    run = api.AnalysisRun(
        kind="step", revision="fraud-1", step=1, started_at=T0, metrics=[api.MetricStatus(name="check")]
    )
    first = jobs.metric_job(OWNER, metric, run, "fraud-0")
    assert first == jobs.metric_job(OWNER, metric, run, "fraud-0")  # a later pass finds the same Job
    [container] = first["spec"]["template"]["spec"]["containers"]
    assert container["env"][:4] == [
        {"name": "MODELSHIP_NAME", "value": "fraud"},
        {"name": "MODELSHIP_NAMESPACE", "value": "ml"},
        {"name": "MODELSHIP_REVISION", "value": "fraud-1"},
        {"name": "MODELSHIP_STABLE_REVISION", "value": "fraud-0"},
    ]
    assert first["spec"]["activeDeadlineSeconds"] == 600
    assert "env" not in CHECK["spec"]["containers"][0]  # the spec's template is not changed
    measured = run.model_copy(update={"metrics": [api.MetricStatus(name="check", successful=1)]})
    assert (
        jobs.metric_job(OWNER, metric, measured, "fraud-0")["metadata"]["name"] != first["metadata"]["name"]
    )


def judged(
    metric: api.Metric, message: str, state: jobs.JobState = "Succeeded", code: int | None = 0, **fields: Any
) -> tuple[str, str]:
    raw = jobs.metric_measurement(JobObservation("fraud-metric-1", state, code, message))
    assert raw is not None
    return verdicts.judge(metric, analysis(metric, **fields), raw)


def test_a_job_metric_without_limits_is_judged_by_its_exit_code() -> None:
    assert judged(job_metric(), "") == ("Successful", "check: the Job succeeded")
    assert judged(job_metric(), '{"error": "3 of 40 checks failed"}', "Failed", 1) == (
        "Failed",
        "check: the Job fraud-metric-1 failed: 3 of 40 checks failed",
    )


def test_a_job_metrics_value_is_judged_by_its_limits_with_no_request_floor() -> None:
    metric = job_metric(min=0.9, maxDropVsStable=0.02)
    assert judged(metric, '{"value": 0.93, "stable_value": 0.94}', minRequests=100)[0] == "Successful"
    verdict, message = judged(metric, '{"value": 0.81}')
    assert verdict == "Failed" and message == "check = 0.81 is below min 0.9"
    verdict, message = judged(metric, '{"value": 0.91, "stable_value": 0.95}')
    assert verdict == "Failed" and "maxDropVsStable 0.02" in message
    # Exit 0 with no value: no data, as the noData policy says.
    assert judged(metric, "", noData="fail") == ("Failed", "check: no data (noData: fail)")
    # A non-zero exit fails the revision whatever the value.
    assert judged(metric, '{"value": 0.99}', "Failed", 2)[0] == "Failed"


def test_a_job_metric_whose_report_cannot_be_read_is_an_error_of_the_check() -> None:
    verdict, message = judged(job_metric(max=1), "accuracy is fine")
    assert verdict == "Error"
    assert "the termination message is not a JSON object: 'accuracy is fine'" in message
    assert jobs.metric_measurement(JobObservation("j", "Running")) is None
