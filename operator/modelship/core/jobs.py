"""Kubernetes Jobs the operator runs for a rollout (a `job` metric, an `evaluation` step), pure:
their manifests, and what a finished one says.

The result contract. A Job's first container reports by exiting: 0 passed, anything else failed.
It may also write one JSON object on one line to its termination message, the file
`/dev/termination-log` (`terminationMessagePath`), to report a value::

    {"value": 0.93}
    {"value": 0.81, "stable_value": 0.84, "examples": 400, "metric": "accuracy"}
    {"error": "POST http://fraud-canary/predict answered 503"}

`value` (a number) is judged against the metric's limits, `stable_value` against
`maxIncreaseVsStable`/`maxDropVsStable`; `error` says why no value could be had; other keys are
shown, not judged. Why the termination message and not the log: Kubernetes keeps it in the Pod's
status (`state.terminated.message`, up to 4096 bytes), so the operator reads it with the `list
pods` it already has, needs no `pods/log` permission, and the value outlives the container's log
rotation. When the message is not a JSON object, its last line is tried (a container whose
`terminationMessagePolicy` is `FallbackToLogsOnError` ends its log with the line).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelship import api
from modelship.core import manifests
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.manifests import MANAGED_BY, MODEL_LABEL, Manifest, Owner, owner_reference

JOB_LABEL = "modelship.io/job"  # what the Job is for: `metric` or `evaluation`
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on the Job's pods
RESULT_PATH = "/dev/termination-log"
MAX_NAME = 63  # a Job's name is a label value on its pods
TTL_SECONDS = 3600  # a finished Job the operator did not delete goes by itself

JobState = Literal["Running", "Succeeded", "Failed"]


@dataclass(frozen=True)
class JobObservation:
    """What the shell read of one Job and its pod."""

    name: str
    state: JobState
    exit_code: int | None = None  # the first container's, once it terminated
    message: str = ""  # its termination message
    reason: str = ""  # why the Job failed, from its Failed condition (DeadlineExceeded, ...)
    ready: bool = False  # a pod of the Job is running and ready (`status.ready`)
    labels: Mapping[str, str] = field(default_factory=dict)  # the Job's own (what it is for)

    @property
    def purpose(self) -> str | None:
        """What the Job is for (`JOB_LABEL`: `metric`, `evaluation`, `load`)."""
        return self.labels.get(JOB_LABEL)


@dataclass(frozen=True)
class JobResult:
    """A finished Job's report: passed (exit 0) and what its termination message says."""

    passed: bool
    value: float | None = None
    stable_value: float | None = None
    error: str | None = None  # the Job's own `error`, or why its message could not be read
    shown: dict[str, Any] = field(default_factory=dict)  # the other keys, for people


def job_name(owner: str, purpose: str, *key: object) -> str:
    """A Job's name: the ModelDeployment's, what it is for, and a hash of `key` (the revision and
    the step or round), so a pass after a crash finds the Job the one before it created."""
    digest = hashlib.sha256(json.dumps([purpose, *map(str, key)]).encode()).hexdigest()[:8]
    suffix = f"-{purpose}-{digest}"
    return owner[: MAX_NAME - len(suffix)].rstrip("-") + suffix


def render(
    owner: Owner, name: str, purpose: str, pod: Manifest, deadline_seconds: int, labels: dict[str, str]
) -> Manifest:
    """A Job that runs `pod` (a pod template: `{"metadata": ..., "spec": ...}`) once: no retries
    (a second run would judge the revision twice), killed after `deadline_seconds`."""
    meta = {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**MANAGED_BY, MODEL_LABEL: owner.name, JOB_LABEL: purpose, **labels},
        "ownerReferences": [owner_reference(owner)],
    }
    pod_meta = dict(pod.get("metadata") or {})
    # Not the model's label: a Service that selects every pod of the model (the `service` router's
    # `<name>`) must not send users to a Job's pod.
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), JOB_LABEL: purpose}
    spec = dict(pod.get("spec") or {})
    spec["restartPolicy"] = "Never"
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta,
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": deadline_seconds,
            "ttlSecondsAfterFinished": TTL_SECONDS,
            "template": {"metadata": pod_meta, "spec": spec},
        },
    }


def revision_pod(owner: Owner, revision: str, template: api.RevisionTemplate) -> tuple[Manifest, Manifest]:
    """A pod template that runs a revision's own image as a tool (`modelserver evaluate`, `modelserver
    load`), and its model container to give `args`: the revision's pod (image, model volume and
    environment, so `--dataset bundle` finds the bundle beside the model) on the CPU, with no sidecar,
    port or probe, and none of the revision's labels, so no Service selects it: it is no replica.
    It reports by the result contract (`terminationMessagePath`)."""
    revision_pod = manifests.deployment(owner, revision, template, 1, placement="cpu")
    pod: Manifest = revision_pod["spec"]["template"]
    container = next(c for c in pod["spec"]["containers"] if c["name"] == manifests.CONTAINER)
    pod["spec"]["containers"] = [container]  # a sidecar (spec.template) would keep the Job running
    for serving_only in ("ports", "startupProbe", "livenessProbe", "readinessProbe"):
        container.pop(serving_only, None)
    pod["spec"]["enableServiceLinks"] = True  # the Services' variables `service_url` names
    container["terminationMessagePath"] = RESULT_PATH
    pod["metadata"] = {"labels": dict(MANAGED_BY)}
    return pod, container


def service_url(service: str) -> str:
    """A Service's address through the variables Kubernetes gives every pod for the Services of
    its namespace (`$(VAR)` is expanded in `args`): no cluster DNS needed. The Service must exist
    before the Job's pod: `<name>-stable` always, `<name>-canary` from the canary's first pass,
    `<name>-preview` from the preview's."""
    return f"http://{manifests.service_host(service)}:{manifests.SERVICE_PORT}"


def result(observed: JobObservation) -> JobResult | None:
    """A finished Job's result; None while it runs."""
    if observed.state == "Running":
        return None
    passed = observed.state == "Succeeded"
    report, problem = parse_message(observed.message)
    if not passed and observed.exit_code is None:  # it never ran to the end: killed, deadline
        killed = observed.reason or "the Job failed before its container finished"
        return JobResult(False, error=str(report.get("error") or killed))
    value, bad = _number(report, "value")
    stable, bad_stable = _number(report, "stable_value")
    error = report.get("error")
    shown = {k: v for k, v in report.items() if k not in ("value", "stable_value", "error")}
    why: str | None = str(error) if error is not None else (problem or bad or bad_stable)
    if why is None and not passed:
        why = f"exit code {observed.exit_code}"
    return JobResult(passed, value, stable, why, shown)


def parse_message(message: str) -> tuple[dict[str, Any], str | None]:
    """The JSON object a termination message holds (the whole message, else its last line), and
    why it holds none (None: it does, or the message is empty: a Job that only exits)."""
    text = message.strip()
    if not text:
        return {}, None
    for candidate in (text, text.splitlines()[-1]):
        try:
            doc = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(doc, dict):
            return doc, None
    return {}, f"the termination message is not a JSON object: {text[-200:]!r}"


def _number(report: dict[str, Any], key: str) -> tuple[float | None, str | None]:
    raw = report.get(key)
    if raw is None:
        return None, None
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        return None, f"the result's {key!r} is not a finite number: {raw!r}"
    return float(raw), None


# ---- job metrics (`provider: job`) ----------------------------------------------------------------

METRIC_PURPOSE = "metric"


def metric_job(owner: Owner, metric: api.Metric, run: api.AnalysisRun, stable: str) -> Manifest:
    """The Job of one round of a job metric in `run`: the metric's pod template, each container
    told what it checks (MODELSHIP_NAME, MODELSHIP_NAMESPACE, MODELSHIP_REVISION,
    MODELSHIP_STABLE_REVISION). Named by the round, so each round runs once."""
    assert metric.job is not None  # admission: provider job goes with job
    pod = copy.deepcopy(metric.job.template)
    told = [
        {"name": "MODELSHIP_NAME", "value": owner.name},
        {"name": "MODELSHIP_NAMESPACE", "value": owner.namespace},
        {"name": "MODELSHIP_REVISION", "value": run.revision},
        {"name": "MODELSHIP_STABLE_REVISION", "value": stable},
    ]
    for container in (pod.get("spec") or {}).get("containers") or []:
        container["env"] = [*told, *(container.get("env") or [])]
    deadline = int(api.parse_duration(metric.job.timeout).total_seconds())
    labels = {"modelship.io/metric": metric.name}
    return render(owner, metric_job_name(owner, metric, run), METRIC_PURPOSE, pod, deadline, labels)


def metric_job_name(owner: Owner, metric: api.Metric, run: api.AnalysisRun) -> str:
    """The name of the Job of the round of `metric` that `run` is in: its rounds so far count it."""
    tallies = next((m for m in run.metrics if m.name == metric.name), api.MetricStatus(name=metric.name))
    round_ = tallies.successful + tallies.failed + tallies.inconclusive + tallies.errors
    key = (run.kind, run.revision, run.step, f"{run.started_at:%Y%m%dT%H%M%SZ}", metric.name, round_)
    return job_name(owner.name, METRIC_PURPOSE, *key)


def metric_measurement(observed: JobObservation) -> RawMeasurement | None:
    """A finished job metric's measurement (None while the Job runs): a non-zero exit fails the
    revision; a result that cannot be read is an error of the check; else its value (none: the
    metric's limits see no data, and a metric without limits passes)."""
    found = result(observed)
    if found is None:
        return None
    if not found.passed:
        return RawMeasurement(failed=f"the Job {observed.name} failed: {found.error}")
    if found.error is not None:
        return RawMeasurement(error=f"the Job {observed.name}: {found.error}")
    return RawMeasurement(value=found.value, stable_value=found.stable_value)
