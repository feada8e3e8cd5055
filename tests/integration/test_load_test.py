"""Load tests with the real operator (a subprocess), the real Job controller and KWOK's fake
nodes: a `loadTest` step's Job is created for the candidate's Service and the step completes once
the Job's pod runs (KWOK runs it); a Job the API server refuses (a quota of 0 Jobs) never runs,
and the rollout is aborted as `LoadTestFailed` once `startTimeout` has passed: it does not pass
silently; an aborted rollout's load Job is deleted, its pod with it, while it runs."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from localworld.rollouts import at
from modelship import api
from modelship.core import control, jobs, loadtest
from modelship.kube.storage import Storage, jobs_path, pods_path

from .mdhelpers import (
    Operator,
    crd_installed,
    deploy_stable,
    example,
    kube,
    md_path,
    md_status,
    operator,
    revision,
    wait_until,
)

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

NAME = "fraud-detector"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}
LOAD = {"rate": 5, "duration": "10s", "startTimeout": "1m"}


def manifest(image: str, start_timeout: str = "1m") -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    load = {**LOAD, "startTimeout": start_timeout}
    steps = [{"loadTest": load}, {"setWeight": 50}, {"pause": {"duration": "1s"}}]
    doc["spec"].update({"image": image, "strategy": {"canary": {"steps": steps}}})
    return doc


def start_canary(kube: Storage, namespace: str) -> tuple[str, str]:
    stable = deploy_stable(kube, namespace, manifest(IMAGES["a"]))
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    return stable, revision(manifest(IMAGES["b"]))


def test_the_load_test_step_completes_once_its_job_runs(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    _, canary = start_canary(kube, namespace)
    wait_until(
        "the canary promoted",
        lambda: md_status(kube, namespace, NAME).get("stableRevision") == canary,
        timeout=120,
    )
    [job] = kube.items(jobs_path(namespace), labelSelector=f"{jobs.JOB_LABEL}={loadtest.PURPOSE}")
    assert job["metadata"]["labels"][loadtest.LOADED_LABEL] == canary
    assert job["metadata"]["ownerReferences"][0]["name"] == NAME
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"] == IMAGES["b"]
    assert container["args"][:3] == ["load", "--url", "http://$(FRAUD_DETECTOR_CANARY_SERVICE_HOST):80"]
    assert container["args"][container["args"].index("--requests") + 1] == "50"


def test_a_load_test_whose_job_never_runs_aborts_the_rollout(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    stable = deploy_stable(kube, namespace, manifest(IMAGES["a"], "5s"))
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": "no-jobs", "namespace": namespace},
        "spec": {"hard": {"count/jobs.batch": "0"}},
    }
    kube.create(f"/api/v1/namespaces/{namespace}/resourcequotas", quota)
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    canary = revision(manifest(IMAGES["b"], "5s"))
    wait_until(
        "the canary aborted",
        lambda: at(md_status(kube, namespace, NAME), "rollout.aborted.revision") == canary,
        timeout=120,
    )
    status = md_status(kube, namespace, NAME)
    assert at(status, "rollout.aborted.reason") == "LoadTestFailed", status
    assert "the load test Job did not start within 5s" in at(status, "rollout.aborted.message"), status
    assert (status["phase"], status["stableRevision"]) == ("Degraded", stable)
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "LoadTestFailed", progressing
    assert not kube.items(jobs_path(namespace), labelSelector=f"{jobs.JOB_LABEL}={loadtest.PURPOSE}")


# KWOK completes a Job's pod a few seconds after it is ready; these hold it running, as a real load
# of minutes would run (set on the pod before KWOK makes it ready: its stages take a second each).
HOLD_RUNNING = {f"pod-complete.stage.kwok.x-k8s.io/{key}": "1h" for key in ("delay", "jitter-delay")}


def test_an_aborted_rollouts_load_job_and_its_pod_are_deleted_within_seconds(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    doc = manifest(IMAGES["a"])
    steps = [{"loadTest": {**LOAD, "duration": "10m"}}, {"pause": {}}]
    doc["spec"]["strategy"] = {"canary": {"steps": steps}}
    deploy_stable(kube, namespace, doc)
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    selector = f"{jobs.JOB_LABEL}={loadtest.PURPOSE}"
    pod = wait_until(
        "the load Job's pod", lambda: kube.items(pods_path(namespace), labelSelector=selector), timeout=120
    )[0]
    pod_path = f"{pods_path(namespace)}/{pod['metadata']['name']}"
    kube.merge(pod_path, {"metadata": {"annotations": HOLD_RUNNING}}, "modelship-tests")
    wait_until(
        "the load step done: its pod runs, the pause after it holds the canary",
        lambda: at(md_status(kube, namespace, NAME), "rollout.canary.step") == 1,
        timeout=60,
    )
    [job] = kube.items(jobs_path(namespace), labelSelector=selector)
    assert not (job.get("status") or {}).get("conditions"), job["status"]  # still loading

    body = kube.get(md_path(namespace, NAME))
    assert body is not None
    spec = api.ModelDeploymentSpec.model_validate(body["spec"])
    patch = control.patch_for("abort", spec, api.read_status(body["status"], spec))
    kube.merge(md_path(namespace, NAME) + "/status", {"status": patch.body}, "modelship-tests")
    # Within seconds: the Job goes, and its pod is terminating (a kubelet stops it at once; KWOK
    # takes up to its grace period, 30s, to play that).
    wait_until(
        "the load Job gone and its pod terminating",
        lambda: (
            not kube.items(jobs_path(namespace), labelSelector=selector)
            and all(
                p["metadata"].get("deletionTimestamp")
                for p in kube.items(pods_path(namespace), labelSelector=selector)
            )
        ),
        timeout=10,
        interval=0.1,
    )
    wait_until(
        "the load Job's pod gone",
        lambda: not kube.items(pods_path(namespace), labelSelector=selector),
        timeout=60,
    )
    status = md_status(kube, namespace, NAME)
    assert at(status, "rollout.aborted.reason") == "Aborted", status
