"""Job I/O: create a Job the core rendered (`modelship.core.jobs`), read its state and result,
list the ones a ModelDeployment owns, delete one. Any Job the operator runs goes through here (a
`job` metric, an evaluation step, a load test): the reconciler asks for what `engine.wants` names
(`load_test`, `metric_round`, `evaluations`) and carries out the engine's `StopJob` (`stop`); the
result contract is in `modelship.core.jobs`.

The result is read from the Job's pod (`list pods`, which the operator has for the smoke test):
the first container's exit code and termination message. No log is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from modelship import api
from modelship.core import evaluation, jobs, revisions
from modelship.core.analysis import runs
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.manifests import MODEL_LABEL, Manifest, Owner
from modelship.kube.storage import Conflict, KubeError, Storage, jobs_path, pods_path
from modelship.logs import Logger


def create(storage: Storage, manifest: Manifest) -> bool:
    """Create the Job; False when one of its name exists (a pass before a crash created it)."""
    try:
        storage.create(jobs_path(manifest["metadata"]["namespace"]), manifest)
    except Conflict:  # AlreadyExists: Job names are derived from what they run for
        return False
    return True


def read(storage: Storage, namespace: str, name: str) -> jobs.JobObservation | None:
    """The Job's state and its container's report; None when there is no such Job."""
    job = storage.get(jobs_path(namespace, name))
    if job is None:
        return None
    state, reason = _state(job)
    if state == "Running":
        return jobs.JobObservation(name, state, ready=int((job.get("status") or {}).get("ready") or 0) > 0)
    exit_code, message = _terminated(storage, namespace, name)
    return jobs.JobObservation(name, state, exit_code, message, reason)


def _state(job: Manifest) -> tuple[jobs.JobState, str]:
    """The Job's state from its conditions, and why it failed."""
    state: jobs.JobState = "Running"
    reason = ""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            state = "Succeeded"
        elif condition.get("type") == "Failed":
            state = "Failed"
            reason = ": ".join(x for x in (condition.get("reason"), condition.get("message")) if x)
    return state, reason


def _terminated(storage: Storage, namespace: str, name: str) -> tuple[int | None, str]:
    """(exit code, termination message) of the Job's first container, from its newest pod."""
    pods = storage.items(pods_path(namespace), labelSelector=f"{jobs.JOB_NAME_LABEL}={name}")
    pods.sort(key=lambda p: p["metadata"].get("creationTimestamp") or "", reverse=True)
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        first = (pod.get("spec") or {}).get("containers", [{}])[0].get("name")
        for status in statuses:
            ended = (status.get("state") or {}).get("terminated")
            if status.get("name") == first and ended is not None:
                return int(ended.get("exitCode", 0)), str(ended.get("message") or "")
    return None, ""


def run(storage: Storage, manifest: Manifest) -> jobs.JobObservation:
    """The Job's state, created first when there is none (so each pass can call this until the Job
    has finished; the core derives its name from what it runs for, so it is created once)."""
    meta = manifest["metadata"]
    observed = read(storage, meta["namespace"], meta["name"])
    if observed is None:
        create(storage, manifest)
        observed = jobs.JobObservation(meta["name"], "Running")
    return observed


def delete(storage: Storage, namespace: str, name: str) -> bool:
    """Delete the Job and its pods; False when it was already gone."""
    return storage.delete(jobs_path(namespace, name))


def stop(storage: Storage, namespace: str, name: str, logger: Logger) -> None:
    """Delete a Job the engine says no longer belongs to the rollout, its pod with it (background
    propagation). A refusal is logged, not raised: the pass's Events must still go out, the next
    pass asks again, and the Job's own deadline bounds it meanwhile."""
    try:
        if delete(storage, namespace, name):
            logger.info("stopped Job %s: it no longer belongs to the rollout", name)
    except KubeError as err:
        logger.warning("cannot delete Job %s: %s", name, err)


def owned(
    storage: Storage, owner: Owner, read: Mapping[str, jobs.JobObservation], logger: Logger
) -> dict[str, jobs.JobObservation]:
    """The Jobs the ModelDeployment owns, by name, with their labels (what each is for): as listed,
    or, for those in `read` (read in full this pass, with their pod's report), as read. When the
    API server refuses the list, only `read` (the engine then stops none this pass)."""
    selector = f"{MODEL_LABEL}={owner.name},{jobs.JOB_LABEL}"
    try:
        found = storage.items(jobs_path(owner.namespace), labelSelector=selector)
    except KubeError as err:
        logger.warning("cannot list the Jobs of %s: %s", owner.name, err)
        return dict(read)
    out = dict(read)
    for job in found:
        meta: dict[str, Any] = job["metadata"]
        if not any(ref.get("uid") == owner.uid for ref in meta.get("ownerReferences") or []):
            continue  # a Job of an earlier ModelDeployment of the same name
        labels = dict(meta.get("labels") or {})
        name = meta["name"]
        if name in read:
            out[name] = dataclasses.replace(read[name], labels=labels)
        else:
            state, reason = _state(job)
            ready = int((job.get("status") or {}).get("ready") or 0) > 0
            out[name] = jobs.JobObservation(name, state, reason=reason, ready=ready, labels=labels)
    return out


def load_test(storage: Storage, wanted: Manifest | None, logger: Logger) -> dict[str, jobs.JobObservation]:
    """The load test's Job (`engine.wants`), created when missing, as read; none when the API server
    fails (the load test then counts as not started, and its `startTimeout` still bounds the wait)."""
    if wanted is None:
        return {}
    try:
        observed = run(storage, wanted)
    except KubeError as err:
        logger.warning("cannot run the load test Job: %s", err)
        return {}
    return {observed.name: observed}


def metric_round(
    storage: Storage,
    owner: Owner,
    analysis: api.Analysis,
    checked: api.AnalysisRun,
    stable: str,
    now: datetime,
) -> dict[str, RawMeasurement] | None:
    """The round's job metrics, by name, once each round's Job has finished (created on the
    first pass that finds the round due); None while one runs, or for a probe between rounds
    (a Job per probe would be a Job every few seconds)."""
    metrics = [m for m in analysis.metrics if m.provider == "job"]
    if metrics and not runs.due(checked, analysis, now):
        return None
    out: dict[str, RawMeasurement] = {}
    for metric in metrics:
        try:
            found = jobs.metric_measurement(run(storage, jobs.metric_job(owner, metric, checked, stable)))
        except KubeError as err:
            found = RawMeasurement(error=f"cannot run the Job: {err}")
        if found is None:
            return None
        out[metric.name] = found
    return out


def evaluations(
    storage: Storage,
    owner: Owner,
    spec: api.ModelDeploymentSpec,
    due: tuple[api.AnalysisRun, ...],
    logger: Logger,
) -> dict[str, dict[str, RawMeasurement]]:
    """The measurements of due evaluation runs whose Job has finished (the Job is created on
    the first pass that finds it due, read on the next ones); a Job the API server refuses is
    an error of the evaluation."""
    template = revisions.template_of(spec)
    out: dict[str, dict[str, RawMeasurement]] = {}
    for checked in due:
        manifest = evaluation.job(owner, spec, template, checked) if checked.kind == evaluation.KIND else None
        if manifest is None or revisions.revision_name(owner.name, template) != checked.revision:
            continue
        try:
            found = evaluation.measurement(run(storage, manifest))
        except KubeError as err:
            found = RawMeasurement(error=f"cannot run the evaluation Job: {err}")
        if found is not None:
            out[checked.kind] = {m.name: found for m in checked.metrics}
            logger.info("evaluated revision %s: %s", checked.revision, found)
    return out
