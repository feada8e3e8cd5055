"""The pure side of the Jobs a rollout runs: names, manifests, and the result contract."""

from __future__ import annotations

import pytest

from modelship.core import jobs
from modelship.core.jobs import JobObservation, JobResult
from modelship.core.manifests import MODEL_LABEL, Owner

pytestmark = pytest.mark.unit

OWNER = Owner(name="fraud", namespace="ml", uid="u-1")


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
    assert spec["template"]["metadata"]["labels"] == {
        "app": "eval",
        MODEL_LABEL: "fraud",
        jobs.JOB_LABEL: "metric",
    }
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
