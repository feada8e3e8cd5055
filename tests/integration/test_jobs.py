"""Job I/O against the real API server and Job controller: create, read the state and the result
from the pod's termination message, delete.

No kubelet runs here: the test writes the Job pod's status as a kubelet would (a container that
terminated with an exit code and a termination message), and the real Job controller turns that
into the Job's Complete or Failed condition.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import pytest
from kubernetes import client

from modelship.core import jobs as core_jobs
from modelship.core.manifests import Owner
from modelship.kube import jobs
from modelship.kube.reconciler import Reconciler
from modelship.kube.storage import Storage, pods_path

from .mdhelpers import crd_installed, create_md, example, kube

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration

# On no node: KWOK's fake nodes would complete the pod themselves; here the test plays the kubelet.
NOWHERE = {"modelship.io/test-node": "none"}
POD = {
    "spec": {
        "nodeSelector": NOWHERE,
        "containers": [{"name": "check", "image": "registry.example/check@sha256:" + "a" * 64}],
    }
}


def _owner(kube: Storage, namespace: str) -> Owner:
    """A ConfigMap stands in for the ModelDeployment: the Job only needs an owner to hang from."""
    made = kube.create(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"owner-{uuid.uuid4().hex[:6]}"}},
    )
    return Owner(made["metadata"]["name"], namespace, made["metadata"]["uid"])


def _job(kube: Storage, namespace: str, purpose: str) -> dict[str, Any]:
    owner = _owner(kube, namespace)
    manifest = core_jobs.render(owner, core_jobs.job_name(owner.name, purpose, "rev"), purpose, POD, 600, {})
    # The owner is a ConfigMap here, not a ModelDeployment.
    manifest["metadata"]["ownerReferences"][0].update(apiVersion="v1", kind="ConfigMap")
    return manifest


def _pod_of(kube: Storage, namespace: str, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = kube.items(pods_path(namespace), labelSelector=f"{core_jobs.JOB_NAME_LABEL}={name}")
        if pods:
            return pods[0]
        time.sleep(0.2)
    raise TimeoutError(f"the Job controller made no pod for {name} in 30s")


def _terminate(kube: Storage, pod: dict[str, Any], exit_code: int, message: str) -> None:
    """What the kubelet writes when the container ends."""
    meta = pod["metadata"]
    ended = {"exitCode": exit_code, "reason": "Completed" if exit_code == 0 else "Error", "message": message}
    status = {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [
            {
                "name": "check",
                "image": POD["spec"]["containers"][0]["image"],
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "state": {"terminated": ended},
            }
        ],
    }
    kube.merge(f"{pods_path(meta['namespace'])}/{meta['name']}/status", {"status": status})


def _finished(kube: Storage, namespace: str, name: str) -> core_jobs.JobObservation:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen = jobs.read(kube, namespace, name)
        assert seen is not None
        if seen.state != "Running":
            return seen
        time.sleep(0.3)
    raise TimeoutError(f"Job {name} not finished after 60s")


def test_a_job_that_reports_a_value(kube: Storage, namespace: str) -> None:
    manifest = _job(kube, namespace, "metric")
    name = manifest["metadata"]["name"]
    assert jobs.create(kube, manifest) is True
    assert jobs.create(kube, manifest) is False  # a second pass finds it there
    assert jobs.read(kube, namespace, name) == core_jobs.JobObservation(name, "Running")
    line = '{"metric":"accuracy","value":0.93,"examples":400}'
    _terminate(kube, _pod_of(kube, namespace, name), 0, line + "\n")
    seen = _finished(kube, namespace, name)
    assert seen == core_jobs.JobObservation(name, "Succeeded", 0, line + "\n")
    assert core_jobs.result(seen) == core_jobs.JobResult(
        True, 0.93, None, None, {"metric": "accuracy", "examples": 400}
    )
    assert jobs.delete(kube, namespace, name) is True
    assert jobs.read(kube, namespace, name) is None
    assert jobs.delete(kube, namespace, name) is False


def test_a_job_that_fails(kube: Storage, namespace: str) -> None:
    manifest = _job(kube, namespace, "evaluation")
    name = manifest["metadata"]["name"]
    jobs.create(kube, manifest)
    _terminate(kube, _pod_of(kube, namespace, name), 6, '{"error": "POST http://m-canary/predict failed"}')
    seen = _finished(kube, namespace, name)
    assert (seen.state, seen.exit_code) == ("Failed", 6)
    assert "BackoffLimitExceeded" in seen.reason
    assert core_jobs.result(seen) == core_jobs.JobResult(False, error="POST http://m-canary/predict failed")


class JobLists(Storage):
    """Counts the Jobs lists sent through it."""

    lists = 0

    def items(self, path: str, **query: str) -> list[dict[str, Any]]:
        if path.startswith("/apis/batch/v1/") and path.endswith("/jobs"):
            self.lists += 1
        return super().items(path, **query)


def test_passes_list_a_modeldeployments_jobs_only_while_it_may_have_some(
    api_client: client.ApiClient, kube: Storage, namespace: str, crd_installed: None
) -> None:
    """Its first pass lists them; while the last list found none and a pass wants no Job (no
    analysis run, no load test), that pass lists nothing; the resync's whole pass always lists
    (the safety net: here it finds a Job made behind the operator's back), and then every pass
    lists until one finds none again."""
    made = create_md(kube, namespace, example("basic.yaml"))
    meta = made["metadata"]
    storage, log = JobLists(api_client), logging.getLogger("test-jobs")
    reconciler = Reconciler(storage)
    reconciler.step(namespace, meta["name"], log)
    assert storage.lists == 1, "nothing known yet: listed"
    reconciler.step(namespace, meta["name"], log)
    reconciler.step(namespace, meta["name"], log)
    assert storage.lists == 1, "none found, none wanted: not listed again"
    owner = Owner(meta["name"], namespace, meta["uid"])
    manifest = core_jobs.render(owner, core_jobs.job_name(owner.name, "metric", "x"), "metric", POD, 600, {})
    assert jobs.create(kube, manifest)
    reconciler.step(namespace, meta["name"], log, resync=True)
    assert storage.lists == 2, "the resync's whole pass lists"
    reconciler.step(namespace, meta["name"], log)
    assert storage.lists == 3, "one found: the next pass lists again"
    jobs.delete(kube, namespace, manifest["metadata"]["name"])
