"""Job I/O: create a Job the core rendered (`modelship.core.jobs`), read its state and result,
delete it. Any Job the operator runs goes through here (a `job` metric, an evaluation step, a
load test); the result contract is in `modelship.core.jobs`.

The result is read from the Job's pod (`list pods`, which the operator has for the smoke test):
the first container's exit code and termination message. No log is read.
"""

from __future__ import annotations

from modelship.core import jobs
from modelship.core.manifests import Manifest
from modelship.kube.storage import Conflict, Storage, jobs_path, pods_path


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
    if state == "Running":
        return jobs.JobObservation(name, state, ready=int((job.get("status") or {}).get("ready") or 0) > 0)
    exit_code, message = _terminated(storage, namespace, name)
    return jobs.JobObservation(name, state, exit_code, message, reason)


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
