"""The `evaluation` canary step: the canary is scored offline (a Job running `modelserver
evaluate`) before it gets any traffic; one test per outcome, and the Job it asks for."""

from __future__ import annotations

from typing import Any

import pytest

from modelship import api
from modelship.core import evaluation, jobs, revisions
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.manifests import MANAGED_BY, REVISION_LABEL

from .enginesim import OWNER, T0, World, spec

pytestmark = pytest.mark.unit

NEW_IMAGE = "registry.example/fraud@sha256:" + "c" * 64
EVALUATION = {"min": 0.9, "maxDropVsStable": 0.02}
STEPS: list[dict[str, Any]] = [{"evaluation": EVALUATION}, {"setWeight": 50}, {"pause": {}}]


def evaluated(image: str | None = None, step: dict[str, Any] = EVALUATION) -> api.ModelDeploymentSpec:
    fields: dict[str, Any] = {
        "replicas": 4,
        "strategy": {"canary": {"steps": [{"evaluation": step}, *STEPS[1:]]}},
        "traffic": {"router": "gatewayAPI", "httpRoute": "fraud"},
    }
    if image:
        fields["image"] = image
    return spec(**fields)


def condition(status: api.ModelDeploymentStatus, type_: str) -> api.Condition:
    return next(c for c in status.conditions or [] if c.type == type_)


def canary_started(
    score: RawMeasurement | None = None, running: bool = False
) -> tuple[World, api.ModelDeploymentSpec]:
    """A stable world, then the new image: its canary pods come up (weight 0) and the evaluation
    runs on the next pass."""
    old = evaluated()
    world = World()
    for _ in range(2):
        world.reconcile(old)
        world.settle()
    assert world.status.phase == "Healthy"
    if score is not None:
        world.metrics["accuracy"] = score
    world.evaluation_running = running
    new = evaluated(NEW_IMAGE)
    world.reconcile(new)  # the canary's Deployment
    world.settle()
    world.reconcile(new)  # its pods are ready: the evaluation run starts
    return world, new


def run_of(world: World) -> api.AnalysisRun:
    return next(r for r in world.status.analysis or [] if r.kind == "evaluation")


def test_the_evaluation_waits_for_the_canarys_pods_and_gives_it_no_traffic_meanwhile() -> None:
    old = evaluated()
    world = World()
    for _ in range(2):
        world.reconcile(old)
        world.settle()
    new = evaluated(NEW_IMAGE)
    world.reconcile(new)
    assert world.status.analysis is None or not any(r.kind == "evaluation" for r in world.status.analysis)
    assert condition(world.status, "Progressing").message.endswith("evaluation waits for the canary's pods")
    assert world.status.canary is not None and world.status.canary.weight == 0


def test_a_passing_score_lets_the_canary_go_on_to_its_first_weight() -> None:
    good = RawMeasurement(value=0.93, stable_value=0.92, requests=1000)
    world, new = canary_started(good)
    for _ in range(3):
        world.tick(2)
        world.reconcile(new)
        world.settle()
    run = run_of(world)
    assert (run.phase, run.step) == ("Successful", 0)
    measured = run.metrics[0].measurements[-1]
    assert (measured.verdict, measured.value, measured.stable_value) == ("Successful", 0.93, 0.92)
    assert world.status.canary is not None and world.status.canary.weight == 50
    assert "AnalysisSuccessful" in [e.reason for e in world.events]


def test_a_score_below_min_aborts_before_any_traffic() -> None:
    world, new = canary_started(RawMeasurement(value=0.34, stable_value=0.92, requests=1000))
    world.tick(2)
    decision = world.reconcile(new)
    status = decision.status
    assert status.phase == "Degraded" and status.canary is None
    assert status.aborted is not None and status.aborted.reason == "EvaluationFailed"
    progressing = condition(status, "Progressing")
    assert progressing.reason == "EvaluationFailed"
    assert "accuracy = 0.34 is below min 0.9" in progressing.message
    assert world.route is not None and all(
        weight == 0 for service, weight in world.route.items() if service.endswith("-canary")
    )


def test_a_drop_from_stable_beyond_max_drop_vs_stable_aborts() -> None:
    world, new = canary_started(RawMeasurement(value=0.91, stable_value=0.95, requests=1000))
    world.tick(2)
    status = world.reconcile(new).status
    assert status.aborted is not None and status.aborted.reason == "EvaluationFailed"
    assert (
        "below the stable revision's 0.95; maxDropVsStable 0.02" in condition(status, "Progressing").message
    )


def test_a_job_that_could_not_score_the_canary_aborts() -> None:
    failed = RawMeasurement(
        error="the evaluation Job fraud-evaluation-1 failed: POST .../predict answered 503"
    )
    world, new = canary_started(failed)
    world.tick(2)
    status = world.reconcile(new).status
    assert status.aborted is not None and status.aborted.reason == "EvaluationFailed"
    assert "answered 503" in condition(status, "Progressing").message


def test_a_job_that_scored_no_example_aborts() -> None:
    world, new = canary_started(RawMeasurement(value=None, requests=0))
    world.tick(2)
    status = world.reconcile(new).status
    assert status.aborted is not None and status.aborted.reason == "EvaluationFailed"
    assert "noData: fail" in condition(status, "Progressing").message


def test_while_the_job_runs_the_canary_waits_at_weight_0_and_the_operator_looks_again_soon() -> None:
    world, new = canary_started(running=True)
    for _ in range(3):
        world.tick(2)
        decision = world.reconcile(new)
    assert run_of(world).phase == "Running"
    assert world.status.canary is not None and world.status.canary.weight == 0
    assert decision.wake_at is not None
    assert decision.wake_at - world.now <= api.parse_duration(evaluation.INTERVAL)
    world.evaluation_running = False  # the Job finished with the default (passing) score
    world.tick(2)
    world.reconcile(new)
    assert run_of(world).phase == "Successful"


def test_the_job_scores_the_canary_through_its_service_with_the_revisions_own_pod() -> None:
    s = evaluated(NEW_IMAGE)
    template = revisions.template_of(s)
    revision = revisions.revision_name(OWNER.name, template)
    settings = evaluation.analysis(s.strategy.steps[0].evaluation)  # type: ignore[arg-type]
    run = api.AnalysisRun(
        kind="evaluation",
        revision=revision,
        step=0,
        started_at=T0,
        metrics=[api.MetricStatus(name=m.name) for m in settings.metrics],
    )
    job = evaluation.job(OWNER, s, template, run)
    assert job is not None and job["metadata"]["name"] == evaluation.job_name(OWNER, run)
    pod = job["spec"]["template"]
    assert REVISION_LABEL not in pod["metadata"]["labels"]  # `fraud-canary` must not select it
    assert pod["metadata"]["labels"][jobs.JOB_LABEL] == "evaluation"
    [container] = pod["spec"]["containers"]
    assert container["image"] == NEW_IMAGE
    assert "readinessProbe" not in container and "ports" not in container
    assert container["args"] == [
        "evaluate",
        "--url",
        "http://$(FRAUD_CANARY_SERVICE_HOST):80",
        "--metric",
        "accuracy",
        "--compare-url",
        "http://$(FRAUD_STABLE_SERVICE_HOST):80",
        "--dataset",
        "bundle",
        "--result-file",
        "/dev/termination-log",
    ]
    # The revision's environment (MODEL_PATH, from the image here, says where the holdout is).
    assert {"name": "MODEL_SHA256", "value": "a" * 64} in container["env"]
    assert job["spec"]["activeDeadlineSeconds"] == 600 and job["spec"]["backoffLimit"] == 0
    assert set(MANAGED_BY.items()) <= set(job["metadata"]["labels"].items())


@pytest.mark.parametrize(
    ("dataset", "args"),
    [
        (
            {"uri": "https://data.example/holdout.json", "sha256": "e" * 64},
            ["--dataset", "https://data.example/holdout.json", "--dataset-sha256", "e" * 64],
        ),
        (
            {"claimName": "eval-data", "path": "fraud/holdout.json"},
            ["--dataset", "/dataset/fraud/holdout.json"],
        ),
    ],
)
def test_the_dataset_from_a_uri_or_a_claim(dataset: dict[str, str], args: list[str]) -> None:
    s = evaluated(NEW_IMAGE, step={"min": 0.9, "dataset": dataset})
    template = revisions.template_of(s)
    run = api.AnalysisRun(
        kind="evaluation",
        revision=revisions.revision_name(OWNER.name, template),
        step=0,
        started_at=T0,
    )
    job = evaluation.job(OWNER, s, template, run)
    assert job is not None
    [container] = job["spec"]["template"]["spec"]["containers"]
    joined = container["args"]
    assert "--compare-url" not in joined  # no relative limit: stable is not scored
    assert any(joined[i : i + len(args)] == args for i in range(len(joined)))
    if "claimName" in dataset:
        volumes = job["spec"]["template"]["spec"]["volumes"]
        assert {
            "name": "dataset",
            "persistentVolumeClaim": {"claimName": "eval-data", "readOnly": True},
        } in volumes


@pytest.mark.parametrize(
    ("observed", "measured"),
    [
        (jobs.JobObservation("j", "Running"), None),
        (
            jobs.JobObservation(
                "j", "Succeeded", 0, '{"metric":"accuracy","value":0.93,"examples":1000,"stable_value":0.95}'
            ),
            RawMeasurement(value=0.93, stable_value=0.95, requests=1000.0),
        ),
        (
            jobs.JobObservation("j", "Failed", 6, '{"error":"POST http://x/predict answered 503"}'),
            RawMeasurement(error="the evaluation Job j failed: POST http://x/predict answered 503"),
        ),
        (
            jobs.JobObservation(
                "j", "Failed", None, "", "DeadlineExceeded: Job was active longer than specified"
            ),
            RawMeasurement(
                error="the evaluation Job j failed: DeadlineExceeded: Job was active longer than specified"
            ),
        ),
    ],
)
def test_what_the_job_reports_is_the_measurement(
    observed: jobs.JobObservation, measured: RawMeasurement | None
) -> None:
    assert evaluation.measurement(observed) == measured


def test_the_docs_example_of_an_evaluation_step_is_valid() -> None:
    import re
    from pathlib import Path

    import yaml

    text = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    section = text[text.index("## Offline evaluation") :]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    canary = yaml.safe_load(block.group(1))["spec"]["strategy"]["canary"]
    steps = api.Canary.model_validate(canary).steps
    assert steps[0].evaluation == api.EvaluationStep(min=0.9, max_drop_vs_stable=0.02)
