"""Load tests, pure: a bounded load on the candidate's own Service, so the analysis that judges
it has requests on a quiet service or a blue/green preview.

Where one runs: a canary step `{loadTest: {...}}` loads `<name>-canary`; `blueGreen.
prePromotionLoadTest` loads `<name>-preview` once the preview is ready and has passed its smoke
test. It is a Job (`core.jobs`) running the candidate's own image as `modelserver load`, aimed at
the Service through the variables Kubernetes gives the pod: no URL is asked for, so it can load
nothing else. Bounded three times: the rate, the duration and the requests (`api.LoadTest`).

It runs beside the analysis, not before it: the canary step completes once the Job's pod is
running (the next steps, an analysis step, go on while it sends), and the pre-promotion analysis
starts once it is. What fails it, with reason `LoadTestFailed` (the rollout is aborted, as a failed
analysis aborts it): a Job whose pod has not started within `startTimeout` (unschedulable, an image
that cannot be pulled), a Job that failed (`modelserver load` got no answer at all, or could not
read its rows), or, for the preview, one that fails before the pre-promotion analysis has passed.
A load that ends early leaves the analysis fewer requests: `analysis.minRequests` keeps it from
judging too few.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from modelship import api
from modelship.core import gates, jobs, manifests, revisions

PURPOSE = "load"
LOADED_LABEL = "modelship.io/loaded-revision"
FAILED = "LoadTestFailed"  # the abort reason
RECHECK = timedelta(seconds=2)  # how often a pass looks at a load test that is starting
FINISH_SLACK_SECONDS = 30  # past start timeout + duration, before the Job's deadline stops it
PRE_PROMOTION = "prePromotion"  # `where` of a blue/green preview's load test


@dataclass(frozen=True)
class State:
    """Where a load test is: `starting` (no pod running yet), `running` (or done: the load was
    sent), `failed` (the message says why)."""

    phase: Literal["starting", "running", "failed"]
    message: str = ""


def step_of(spec: api.ModelDeploymentSpec, step: int | None) -> api.LoadTest | None:
    steps = spec.strategy.steps
    return steps[step].load_test if step is not None and 0 <= step < len(steps) else None


def requests(load: api.LoadTest) -> int:
    """How many requests the Job sends at most: `requests`, else rate x duration, within the bounds."""
    seconds = api.parse_duration(load.duration).total_seconds()
    planned = load.requests if load.requests is not None else math.floor(load.rate * seconds)
    return max(1, min(planned, api.MAX_LOAD_REQUESTS))


def job_name(owner: manifests.Owner, revision: str, where: int | str, started: datetime) -> str:
    """Named by the revision, the step (or `prePromotion`) and when the step began: a pass after a
    crash finds the Job the pass before created, and a retried rollout gets a new one."""
    return jobs.job_name(owner.name, PURPOSE, revision, where, f"{started:%Y%m%dT%H%M%SZ}")


def job(
    owner: manifests.Owner,
    template: api.RevisionTemplate,
    revision: str,
    service: str,
    load: api.LoadTest,
    name: str,
) -> manifests.Manifest:
    """The load Job for `revision` (rendered from `template`) against the Service `service`."""
    pod, container = jobs.revision_pod(owner, revision, template)
    seconds = api.parse_duration(load.duration).total_seconds()
    container["args"] = [
        "load",
        "--url",
        jobs.service_url(service),
        "--rate",
        f"{load.rate:g}",
        "--duration",
        f"{seconds:g}",
        "--requests",
        str(requests(load)),
        "--feedback-ratio",
        f"{load.feedback_ratio:g}",
        "--dataset",
        "bundle",
        "--result-file",
        jobs.RESULT_PATH,
    ]
    start = api.parse_duration(load.start_timeout).total_seconds()
    deadline = math.ceil(start + seconds) + FINISH_SLACK_SECONDS
    return jobs.render(owner, name, PURPOSE, pod, deadline, {LOADED_LABEL: revision})


def state(
    observed: jobs.JobObservation | None, started: datetime, now: datetime, load: api.LoadTest
) -> State:
    """The load test begun at `started` (None: its Job is not seen yet), at `now`."""
    late = now >= started + api.parse_duration(load.start_timeout)
    if observed is None or (observed.state == "Running" and not observed.ready):
        if late:
            name = f" {observed.name}" if observed is not None else ""
            return State("failed", f"the load test Job{name} did not start within {load.start_timeout}")
        return State("starting")
    if observed.state != "Failed":
        return State("running")
    found = jobs.result(observed)
    why = (found.error if found is not None else None) or "it failed"
    return State("failed", f"the load test Job {observed.name} failed: {why}")


def wanted(
    owner: manifests.Owner, spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus
) -> manifests.Manifest | None:
    """The load Job the shell should run (create if missing) and observe for this pass: the canary
    step's in progress, or the ready preview's until its pre-promotion analysis has passed."""
    template = revisions.template_of(spec)
    revision = revisions.revision_name(owner.name, template)
    rollout = status.rollout
    canary = rollout.canary if rollout is not None else None
    blue_green = rollout.blue_green if rollout is not None else None
    if canary is not None and canary.revision == revision and canary.pause_start_time is not None:
        load = step_of(spec, canary.step)
        if load is not None:
            name = job_name(owner, revision, canary.step, canary.pause_start_time)
            return job(owner, template, revision, f"{owner.name}-canary", load, name)
    bg = spec.strategy.blue_green
    if (
        blue_green is not None
        and bg is not None
        and bg.pre_promotion_load_test is not None
        and blue_green.revision == revision
        and blue_green.phase == "Preview"
        and blue_green.ready_time is not None
        and gates.smoke_passed(spec.smoke_test, revision, status.smoke_test)
        and not pre_promotion_passed(status.analysis or [], revision)
    ):
        name = job_name(owner, revision, PRE_PROMOTION, blue_green.ready_time)
        return job(owner, template, revision, f"{owner.name}-preview", bg.pre_promotion_load_test, name)
    return None


def pre_promotion_passed(runs: Sequence[api.AnalysisRun], revision: str) -> bool:
    """The revision's pre-promotion analysis has passed: its load test is no longer watched."""
    return any(r.kind == "prePromotion" and r.revision == revision and r.phase == "Successful" for r in runs)
