"""The running Jobs a ModelDeployment owns that no longer belong to its rollout, pure: the shell
stops them (deletes them, their pods with them), so a load test's load ends when its rollout does
and no Job goes on checking a revision whose verdict is in.

What belongs, by what the Job is for (`core.jobs.JOB_LABEL`), judged on the status the pass decided:

- `load`: a Job loading the revision of a rollout in progress that is not promoted yet: a canary
  (its load goes on beside the steps after its own), a blue/green preview (phase Preview). An
  abort, a promotion or a new digest ends it.
- `evaluation`: the Job of a running evaluation run of the step in progress.
- `metric`: the Job of the current round of a running run of the rollout in progress (`live`).

A finished Job is left to its TTL (`core.jobs.TTL_SECONDS`: its pod's log stays readable), and a
Job whose label names another purpose (one a later modelship runs) is left alone.
"""

from __future__ import annotations

from collections.abc import Mapping

from modelship import api
from modelship.core import evaluation, jobs, loadtest
from modelship.core.engine.model import live
from modelship.core.manifests import Owner

STOPPED = (loadtest.PURPOSE, evaluation.PURPOSE, jobs.METRIC_PURPOSE)  # the purposes judged here


def stale(
    owner: Owner,
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observed: Mapping[str, jobs.JobObservation],
) -> tuple[str, ...]:
    """The Jobs to stop, by name, in order: running, and not the rollout's in `status`."""
    checking = _checking(owner, spec, status)
    loading = _loading(status)
    out: list[str] = []
    for name, job in sorted(observed.items()):
        if job.state != "Running" or job.purpose not in STOPPED or name in checking:
            continue
        loads_the_rollout = loading is not None and job.labels.get(loadtest.LOADED_LABEL) == loading
        if job.purpose == loadtest.PURPOSE and loads_the_rollout:
            continue
        out.append(name)
    return tuple(out)


def _loading(status: api.ModelDeploymentStatus) -> str | None:
    """The revision whose load tests may run: a canary's, or an unpromoted preview's."""
    if status.canary is not None:
        return status.canary.revision
    if status.blue_green is not None and status.blue_green.phase == "Preview":
        return status.blue_green.revision
    return None


def _checking(owner: Owner, spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus) -> set[str]:
    """The names of the evaluation and job-metric Jobs the running runs of the rollout wait for."""
    names: set[str] = set()
    for run in status.analysis or []:
        if run.phase != "Running" or not live(status, run):
            continue
        if run.kind == evaluation.KIND:
            names.add(evaluation.job_name(owner, run))
        elif spec.analysis is not None:
            names.update(
                jobs.metric_job_name(owner, m, run) for m in spec.analysis.metrics if m.provider == "job"
            )
    return names
