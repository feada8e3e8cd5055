"""Load tests (`loadTest` canary steps, `blueGreen.prePromotionLoadTest`), pure: the limits, the
Job they run, when they count as started or failed, and how the canary and blue/green walks wait
for them."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from modelship import api
from modelship.core import jobs, loadtest, revisions
from modelship.core.manifests import MANAGED_BY, REVISION_LABEL

from .enginesim import OWNER, T0, World, spec
from .test_bluegreen import bg_spec
from .test_canary import NEW_IMAGE, name_of, stable_world, step

pytestmark = pytest.mark.unit

LOAD: dict[str, Any] = {"rate": 20, "duration": "30s"}
ANALYSIS: dict[str, Any] = {
    "interval": "10s",
    "count": 2,
    "metrics": [{"name": "errors", "template": "error-rate", "max": 0.05}],
}


def load_spec(image: str | None = None, load: dict[str, Any] = LOAD) -> api.ModelDeploymentSpec:
    fields: dict[str, Any] = {
        "replicas": 4,
        "strategy": {"canary": {"steps": [{"loadTest": load}, {"analysis": {}}, {"setWeight": 50}]}},
        "analysis": ANALYSIS,
    }
    if image:
        fields["image"] = image
    return spec(**fields)


def progressing(world: World) -> api.Condition:
    return next(c for c in world.status.conditions or [] if c.type == "Progressing")


# ---- limits ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("rate", 500, "less than or equal to 200"),
        ("rate", 0, "greater than 0"),
        ("duration", "2h", "must be from 1s to 1h"),
        ("duration", "500ms", "must be from 1s to 1h"),
        ("duration", "soon", "must be a duration"),
        ("requests", 0, "greater than or equal to 1"),
        ("requests", 100_001, "less than or equal to 100000"),
        ("feedbackRatio", 1.5, "less than or equal to 1"),
        ("url", "http://example.com", "Extra inputs are not permitted"),
    ],
)
def test_a_load_test_beyond_its_bounds_is_refused_naming_the_field(field: str, value: Any, says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        load_spec(load={**LOAD, field: value})
    [error] = caught.value.errors()
    assert error["loc"][-1] == field and error["loc"][:5] == ("strategy", "canary", "steps", 0, "loadTest")
    assert says in str(caught.value)


def test_the_crd_bounds_a_load_test_for_the_api_server_too() -> None:
    from modelship.crd import generate

    schema = generate()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    versions = schema["properties"]["spec"]["properties"]
    step = versions["strategy"]["properties"]["canary"]["properties"]["steps"]["items"]
    load = step["properties"]["loadTest"]["properties"]
    assert load["rate"]["maximum"] == 200 and load["requests"]["maximum"] == 100_000
    assert load["feedbackRatio"]["maximum"] == 1
    rules = [r["rule"] for r in load["duration"]["x-kubernetes-validations"]]
    assert any("duration(self) <= duration('1h')" in r for r in rules)
    assert "url" not in load  # it loads the candidate's Service and nothing else
    assert "loadTest" in step["x-kubernetes-validations"][0]["rule"]  # exactly one action per step
    blue_green = versions["strategy"]["properties"]["blueGreen"]["properties"]
    assert blue_green["prePromotionLoadTest"]["properties"] == load


@pytest.mark.parametrize(
    ("load", "expected"),
    [
        ({"rate": 20, "duration": "30s"}, 600),
        ({"rate": 20, "duration": "30s", "requests": 100}, 100),
        ({"rate": 200, "duration": "1h"}, 100_000),  # rate x duration, capped
        ({"rate": 0.1, "duration": "1s"}, 1),
    ],
)
def test_the_requests_sent_are_bounded(load: dict[str, Any], expected: int) -> None:
    assert loadtest.requests(api.LoadTest.model_validate(load)) == expected


# ---- the Job -----------------------------------------------------------------------------------


def test_the_job_runs_the_candidates_image_as_modelserver_load_against_its_service_only() -> None:
    s = load_spec(NEW_IMAGE, {"rate": 5, "duration": "2m", "feedbackRatio": 0.5, "startTimeout": "1m"})
    template = revisions.template_of(s)
    revision = revisions.revision_name(OWNER.name, template)
    load = api.LoadTest.model_validate(
        {"rate": 5, "duration": "2m", "feedbackRatio": 0.5, "startTimeout": "1m"}
    )
    name = loadtest.job_name(OWNER, revision, 0, T0)
    job = loadtest.job(OWNER, template, revision, f"{OWNER.name}-canary", load, name)
    assert job["kind"] == "Job" and job["metadata"]["name"] == name
    assert job["metadata"]["labels"][jobs.JOB_LABEL] == "load"
    assert job["metadata"]["labels"][loadtest.LOADED_LABEL] == revision
    assert job["metadata"]["ownerReferences"][0]["name"] == OWNER.name
    assert job["spec"]["backoffLimit"] == 0  # a load that failed is not sent twice
    assert job["spec"]["activeDeadlineSeconds"] == 60 + 120 + loadtest.FINISH_SLACK_SECONDS
    pod = job["spec"]["template"]
    [container] = pod["spec"]["containers"]
    assert container["image"] == NEW_IMAGE
    assert container["args"] == [
        "load",
        "--url",
        "http://$(FRAUD_CANARY_SERVICE_HOST):80",
        "--rate",
        "5",
        "--duration",
        "120",
        "--requests",
        "600",
        "--feedback-ratio",
        "0.5",
        "--dataset",
        "bundle",
        "--result-file",
        jobs.RESULT_PATH,
    ]
    assert container["terminationMessagePath"] == jobs.RESULT_PATH
    assert pod["spec"]["enableServiceLinks"] is True
    assert "readinessProbe" not in container and "ports" not in container
    # No Service selects it: it is no replica of the revision.
    assert REVISION_LABEL not in pod["metadata"]["labels"]
    assert pod["metadata"]["labels"] == {**MANAGED_BY, jobs.JOB_LABEL: "load"}


def test_a_retried_rollout_gets_a_new_job_and_a_pass_after_a_crash_the_same_one() -> None:
    first = loadtest.job_name(OWNER, "fraud-abc", 0, T0)
    assert loadtest.job_name(OWNER, "fraud-abc", 0, T0) == first
    assert loadtest.job_name(OWNER, "fraud-abc", 0, T0 + timedelta(seconds=1)) != first
    assert loadtest.job_name(OWNER, "fraud-abc", 1, T0) != first
    assert len(first) <= jobs.MAX_NAME


# ---- when it counts as started, or failed ----------------------------------------------------------

LOADED = api.LoadTest.model_validate({"startTimeout": "1m"})


@pytest.mark.parametrize(
    ("observed", "after", "phase", "message"),
    [
        (None, 10, "starting", ""),
        (jobs.JobObservation("j", "Running"), 59, "starting", ""),
        (jobs.JobObservation("j", "Running", ready=True), 5, "running", ""),
        (jobs.JobObservation("j", "Succeeded", exit_code=0), 5, "running", ""),
        (jobs.JobObservation("j", "Running"), 60, "failed", "the load test Job j did not start within 1m"),
        (None, 60, "failed", "the load test Job did not start within 1m"),
        (
            jobs.JobObservation(
                "j", "Failed", 7, '{"error":"none of 600 requests to http://x was answered"}'
            ),
            5,
            "failed",
            "the load test Job j failed: none of 600 requests to http://x was answered",
        ),
        (
            jobs.JobObservation("j", "Failed", reason="DeadlineExceeded: Job was active longer"),
            5,
            "failed",
            "the load test Job j failed: DeadlineExceeded: Job was active longer",
        ),
    ],
)
def test_a_load_test_is_starting_running_or_failed(
    observed: jobs.JobObservation | None, after: int, phase: str, message: str
) -> None:
    found = loadtest.state(observed, T0, T0 + timedelta(seconds=after), LOADED)
    assert (found.phase, found.message) == (phase, message)


# ---- the canary walk ------------------------------------------------------------------------------


def test_the_load_test_step_starts_its_job_once_the_canarys_pods_are_up_then_analysis_runs_beside_it() -> (
    None
):
    world = stable_world(load_spec())
    new = load_spec(NEW_IMAGE)
    world.reconcile(new)  # the canary's Deployment
    assert not world.load_jobs
    assert progressing(world).message.endswith("the load test waits for the canary's pods")
    world.settle()
    decision = world.reconcile(new)  # pods up: the step begins (recorded: it names the Job)
    assert [e.reason for e in decision.events if e.reason == "LoadTestStarted"] == ["LoadTestStarted"]
    assert world.status.canary is not None and world.status.canary.step == 0
    assert decision.wake_at is not None and decision.wake_at <= world.now  # looks again in 2 s
    world.reconcile(new)  # the Job is asked for, runs: the step completes, the analysis starts
    [job] = {j["metadata"]["name"]: j for j in world.load_jobs}.values()
    assert (
        job["spec"]["template"]["spec"]["containers"][0]["args"][2]
        == "http://$(FRAUD_CANARY_SERVICE_HOST):80"
    )
    assert world.status.canary.step == 1 and world.status.canary.weight == 0
    assert any(r.kind == "step" for r in world.status.analysis or [])
    world.load_jobs.clear()
    world.reconcile(new)
    assert not world.load_jobs  # a step done: its Job is no longer read (nor re-created)


def test_a_load_test_whose_pod_does_not_start_aborts_the_canary_after_its_start_timeout() -> None:
    world = stable_world(load_spec())
    world.load_job = jobs.JobObservation("", "Running")  # unschedulable: no pod runs
    new = load_spec(NEW_IMAGE, {**LOAD, "startTimeout": "20s"})
    step(world, new)
    world.reconcile(new)
    assert world.status.canary is not None and world.status.canary.step == 0
    assert "the load test Job fraud-load-" in progressing(world).message
    assert progressing(world).message.endswith("is starting")
    for _ in range(5):
        world.reconcile(new)
    assert world.status.phase == "Degraded" and world.status.aborted is not None
    assert world.status.aborted.reason == "LoadTestFailed"
    assert "did not start within 20s" in (world.status.aborted.message or "")
    assert progressing(world).reason == "LoadTestFailed"


def test_a_load_test_job_that_fails_aborts_the_canary_with_its_error() -> None:
    world = stable_world(load_spec())
    world.load_job = jobs.JobObservation(
        "", "Failed", 2, '{"error":"cannot read dataset /models/holdout.json"}'
    )
    new = load_spec(NEW_IMAGE)
    step(world, new)
    world.reconcile(new)
    assert world.status.aborted is not None and world.status.aborted.reason == "LoadTestFailed"
    assert "cannot read dataset /models/holdout.json" in (world.status.aborted.message or "")
    assert world.status.canary is None and not any(r.kind == "step" for r in world.status.analysis or [])


# ---- blue/green ---------------------------------------------------------------------------------------


def bg_load(image: str | None = None, load: dict[str, Any] = LOAD) -> api.ModelDeploymentSpec:
    s = bg_spec(image, prePromotionAnalysis=True, prePromotionLoadTest=load, autoPromote=True)
    return s.model_copy(update={"analysis": api.Analysis.model_validate(ANALYSIS)})


def test_the_pre_promotion_analysis_starts_once_the_previews_load_test_runs() -> None:
    world = stable_world(bg_load())
    world.load_job = jobs.JobObservation("", "Running")  # its pod is starting
    new = bg_load(NEW_IMAGE)
    step(world, new)
    world.reconcile(new)
    assert world.load_jobs, "the ready preview's load test is asked for"
    args = world.load_jobs[-1]["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[2] == "http://$(FRAUD_PREVIEW_SERVICE_HOST):80"
    assert not any(r.kind == "prePromotion" for r in world.status.analysis or [])
    assert "pre-promotion load test Job" in progressing(world).message
    world.load_job = jobs.JobObservation("", "Running", ready=True)
    world.reconcile(new)
    assert any(r.kind == "prePromotion" for r in world.status.analysis or [])
    for _ in range(6):
        world.reconcile(new)
        world.settle()
    assert world.status.stable_revision == name_of(new)  # judged on the load, then switched


def test_a_preview_load_test_that_fails_before_the_analysis_passed_aborts_the_preview() -> None:
    world = stable_world(bg_load())
    new = bg_load(NEW_IMAGE)
    step(world, new)
    world.reconcile(new)
    assert any(r.kind == "prePromotion" for r in world.status.analysis or [])
    world.load_job = jobs.JobObservation("", "Failed", 7, '{"error":"none of 600 requests was answered"}')
    world.reconcile(new)
    assert world.status.aborted is not None and world.status.aborted.reason == "LoadTestFailed"
    assert world.status.aborted.message is not None
    assert world.status.aborted.message.startswith("pre-promotion load test: the load test Job fraud-load-")
    assert world.status.stable_revision == name_of(bg_load())


def test_the_docs_examples_of_a_load_test_are_valid() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    section = text[text.index("## Load tests") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    doc = yaml.safe_load(block.group(1))["spec"]
    [first, *_] = api.Canary.model_validate(doc["strategy"]["canary"]).steps
    assert first.load_test == api.LoadTest(rate=20, duration="2m", requests=2000, feedback_ratio=0.5)
    assert api.Analysis.model_validate(doc["analysis"]).min_requests == 50
    gates = text[text.index("## Blue/green gates") :]
    block = re.search(r"```yaml\n(.*?)```", gates, re.S)
    assert block is not None
    blue_green = api.BlueGreen.model_validate(yaml.safe_load(block.group(1))["strategy"]["blueGreen"])
    assert blue_green.pre_promotion_load_test == api.LoadTest(rate=20, duration="2m", feedback_ratio=0.5)
