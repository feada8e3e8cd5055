"""Jobs stop with their rollout: a load test's Job that no longer belongs to the rollout (aborted,
promoted, replaced by a new digest) is stopped (`engine.StopJob`, the pass's last write) while it
runs, and so are the evaluation and job-metric Jobs of runs that ended; a finished Job is left to
its TTL, and a Job whose purpose modelship does not know is left alone."""

from __future__ import annotations

import dataclasses

import pytest

from modelship import api
from modelship.core import engine, evaluation, jobs, loadtest
from modelship.core.engine.jobs import stale

from .enginesim import OWNER, T0, World, command
from .test_canary import NEW_IMAGE, name_of, stable_world, step
from .test_evaluation_step import canary_started, run_of
from .test_jobs import CHECK
from .test_load_test import bg_load, load_spec

pytestmark = pytest.mark.unit

THIRD_IMAGE = "registry.example/fraud@sha256:" + "d" * 64


def stops(decision: engine.Decision) -> list[str]:
    return [w.name for w in decision.writes if isinstance(w, engine.StopJob)]


def loading_canary() -> tuple[World, api.ModelDeploymentSpec, str]:
    """A canary whose loadTest step is done: its Job runs, the analysis step after it has begun."""
    world = stable_world(load_spec())
    new = load_spec(NEW_IMAGE)
    step(world, new)
    world.reconcile(new)
    [name] = world.owned_jobs
    assert world.status.canary is not None and world.status.canary.step == 1
    return world, new, name


def test_an_aborted_canarys_load_job_is_stopped_in_the_pass_that_aborts() -> None:
    world, new, name = loading_canary()
    new, world.status = command("abort", new, world.status)
    decision = world.reconcile(new)
    assert world.status.aborted is not None
    assert stops(decision) == [name]
    assert decision.writes[-1] == engine.StopJob(name)  # after every write that keeps users served
    assert not world.owned_jobs
    assert not stops(world.reconcile(new))


def test_the_load_goes_on_beside_the_later_steps_and_stops_at_promotion() -> None:
    world, new, name = loading_canary()
    for _ in range(30):
        decision = world.reconcile(new)
        world.settle()
        promoted = world.status.stable_revision == name_of(new)
        assert stops(decision) == ([name] if promoted else []), world.status.canary
        if promoted:
            break
    assert world.stopped_jobs == [name]


def test_a_new_digest_mid_rollout_stops_the_replaced_canarys_load() -> None:
    world, _, name = loading_canary()
    third = load_spec(THIRD_IMAGE)
    decision = world.reconcile(third)
    assert world.status.canary is not None and world.status.canary.revision == name_of(third)
    assert stops(decision) == [name]


def test_a_finished_load_job_is_left_to_its_ttl() -> None:
    world, new, name = loading_canary()
    world.owned_jobs[name] = dataclasses.replace(world.owned_jobs[name], state="Succeeded", exit_code=0)
    new, world.status = command("abort", new, world.status)
    assert not stops(world.reconcile(new))
    assert name in world.owned_jobs


def test_a_previews_load_job_runs_until_the_promotion_then_stops() -> None:
    world = stable_world(bg_load())
    new = bg_load(NEW_IMAGE)
    step(world, new)
    world.reconcile(new)
    [name] = world.owned_jobs
    for _ in range(10):
        decision = world.reconcile(new)
        world.settle()
        preview = world.status.blue_green is not None and world.status.blue_green.phase == "Preview"
        assert stops(decision) == ([] if preview else [name])
        if not preview:
            break
    assert world.stopped_jobs == [name]


def test_a_running_evaluation_job_is_kept_then_stopped_when_the_rollout_is_aborted() -> None:
    world, new = canary_started(running=True)
    name = evaluation.job_name(OWNER, run_of(world))
    labels = {jobs.JOB_LABEL: evaluation.PURPOSE, evaluation.EVALUATED_LABEL: run_of(world).revision}
    world.owned_jobs[name] = jobs.JobObservation(name, "Running", ready=True, labels=labels)
    world.tick(2)
    assert not stops(world.reconcile(new))
    new, world.status = command("abort", new, world.status)
    assert stops(world.reconcile(new)) == [name]


# ---- the rule itself, on a status ------------------------------------------------------------------

REVISION = "fraud-1"
METRIC = api.Metric.model_validate({"name": "check", "provider": "job", "job": {"template": CHECK}})
JOB_SPEC = load_spec(NEW_IMAGE).model_copy(update={"analysis": api.Analysis(metrics=[METRIC])})


def canary_status(
    phase: str = "Running", successful: int = 0
) -> tuple[api.ModelDeploymentStatus, api.AnalysisRun]:
    tallies = api.MetricStatus(name="check", successful=successful)
    run = api.AnalysisRun(kind="background", revision=REVISION, phase=phase, started_at=T0, metrics=[tallies])
    status = api.ModelDeploymentStatus(
        stable_revision="fraud-0",
        rollout=api.Rollout(canary=api.CanaryRollout(revision=REVISION, step=2)),
        analysis=[run],
    )
    return status, run


def running(name: str, purpose: str) -> dict[str, jobs.JobObservation]:
    return {name: jobs.JobObservation(name, "Running", labels={jobs.JOB_LABEL: purpose})}


def test_a_job_metric_round_in_progress_is_kept_and_a_past_rounds_is_stopped() -> None:
    status, run = canary_status(successful=1)
    current = jobs.metric_job_name(OWNER, METRIC, run)
    past, _ = canary_status()
    earlier = jobs.metric_job_name(OWNER, METRIC, past.analysis[0] if past.analysis else run)
    observed = {**running(current, jobs.METRIC_PURPOSE), **running(earlier, jobs.METRIC_PURPOSE)}
    assert current != earlier
    assert stale(OWNER, JOB_SPEC, status, observed) == (earlier,)


@pytest.mark.parametrize("phase", ["Failed", "Successful", "Error"])
def test_the_job_metric_job_of_a_run_with_a_verdict_is_stopped(phase: str) -> None:
    status, run = canary_status(phase)
    name = jobs.metric_job_name(OWNER, METRIC, run)
    assert stale(OWNER, JOB_SPEC, status, running(name, jobs.METRIC_PURPOSE)) == (name,)


def test_a_load_job_of_the_rolling_revision_is_kept_and_of_another_stopped() -> None:
    status, _ = canary_status()
    ours = {jobs.JOB_LABEL: loadtest.PURPOSE, loadtest.LOADED_LABEL: REVISION}
    theirs = {jobs.JOB_LABEL: loadtest.PURPOSE, loadtest.LOADED_LABEL: "fraud-9"}
    observed = {
        "ours": jobs.JobObservation("ours", "Running", labels=ours),
        "theirs": jobs.JobObservation("theirs", "Running", labels=theirs),
    }
    assert stale(OWNER, JOB_SPEC, status, observed) == ("theirs",)


def test_a_job_of_a_purpose_modelship_does_not_know_is_left_alone() -> None:
    steady = api.ModelDeploymentStatus(stable_revision="fraud-0")
    assert stale(OWNER, JOB_SPEC, steady, running("someone-elses", "backup")) == ()
    assert stale(OWNER, JOB_SPEC, steady, running("a-load", loadtest.PURPOSE)) == ("a-load",)
