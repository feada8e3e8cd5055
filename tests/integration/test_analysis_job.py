"""Job metrics (`provider: job`): the real operator (a subprocess) judges KWOK canaries by Jobs it
runs, with the real Job controller. No kubelet runs the Jobs' pods here: the test plays it, ending
each pod's container with the exit code and termination message a check would write, by the
revision the Job was told to check (MODELSHIP_REVISION)."""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from localworld.rollouts import at
from modelship.core import jobs
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
CHECK = {
    "spec": {
        # On no node: KWOK's fake nodes would complete the pod themselves.
        "nodeSelector": {"modelship.io/test-node": "none"},
        "containers": [{"name": "score", "image": "registry.example/scorer@sha256:" + "e" * 64}],
    }
}


@dataclass
class Kubelet:
    """Ends each Job pod of the namespace as `reports[revision]` says: (exit code, message)."""

    kube: Storage
    namespace: str
    reports: dict[str, tuple[int, str]] = field(default_factory=dict)
    ended: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.3):
            selector = f"{jobs.JOB_LABEL}=metric"
            for pod in self.kube.items(pods_path(self.namespace), labelSelector=selector):
                name = pod["metadata"]["name"]
                if name in self.ended or (pod.get("status") or {}).get("containerStatuses"):
                    continue
                container = pod["spec"]["containers"][0]
                told = {e["name"]: e.get("value") for e in container.get("env") or []}
                code, message = self.reports.get(told.get("MODELSHIP_REVISION") or "", (0, ""))
                ended = {
                    "exitCode": code,
                    "reason": "Completed" if code == 0 else "Error",
                    "message": message,
                }
                status = {
                    "phase": "Succeeded" if code == 0 else "Failed",
                    "containerStatuses": [
                        {
                            "name": container["name"],
                            "image": container["image"],
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "state": {"terminated": ended},
                        }
                    ],
                }
                self.kube.merge(f"{pods_path(self.namespace)}/{name}/status", {"status": status})
                self.ended.append(name)


@pytest.fixture
def kubelet(kube: Storage, namespace: str) -> Iterator[Kubelet]:
    player = Kubelet(kube, namespace)
    thread = threading.Thread(target=player.run, daemon=True)
    thread.start()
    try:
        yield player
    finally:
        player.stop.set()
        thread.join(timeout=5)


def manifest(image: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    metric = {"name": "holdout", "provider": "job", "min": 0.9, "job": {"template": CHECK, "timeout": "1m"}}
    doc["spec"].update(
        {
            "image": image,
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {}}]}},
            "analysis": {"interval": "1s", "count": 2, "metrics": [metric]},
        }
    )
    return doc


def start_canary(kube: Storage, namespace: str, kubelet: Kubelet, report: tuple[int, str]) -> tuple[str, str]:
    stable = deploy_stable(kube, namespace, manifest(IMAGES["a"]))
    canary = revision(manifest(IMAGES["b"]))
    kubelet.reports[canary] = report
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    return stable, canary


def step_run(kube: Storage, namespace: str, canary: str) -> dict[str, Any]:
    status = md_status(kube, namespace, NAME)
    return next(r for r in status.get("analysis") or [] if r["kind"] == "step" and r["revision"] == canary)


def test_a_job_metric_fails_a_canary(
    kube: Storage, namespace: str, operator: Operator, kubelet: Kubelet
) -> None:
    stable, canary = start_canary(kube, namespace, kubelet, (0, json.dumps({"value": 0.52, "examples": 400})))
    wait_until(
        "the canary aborted",
        lambda: at(md_status(kube, namespace, NAME), "rollout.aborted.revision") == canary,
        timeout=90,
    )
    run = step_run(kube, namespace, canary)
    assert run["phase"] == "Failed" and "holdout = 0.52 is below min 0.9" in run["message"], run
    status = md_status(kube, namespace, NAME)
    assert (status["phase"], status["stableRevision"]) == ("Degraded", stable)
    [job] = kube.items(jobs_path(namespace), labelSelector=f"{jobs.JOB_LABEL}=metric")
    assert job["metadata"]["ownerReferences"][0]["name"] == NAME
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_a_job_metric_that_exits_non_zero_fails_a_canary(
    kube: Storage, namespace: str, operator: Operator, kubelet: Kubelet
) -> None:
    _, canary = start_canary(kube, namespace, kubelet, (3, '{"error": "3 of 40 checks failed"}'))
    wait_until(
        "the canary aborted",
        lambda: at(md_status(kube, namespace, NAME), "rollout.aborted.revision") == canary,
        timeout=90,
    )
    assert "3 of 40 checks failed" in step_run(kube, namespace, canary)["message"]


def test_a_job_metric_passes_a_canary_one_job_per_round(
    kube: Storage, namespace: str, operator: Operator, kubelet: Kubelet
) -> None:
    _, canary = start_canary(kube, namespace, kubelet, (0, '{"value": 0.96}'))
    wait_until(
        "the canary promoted",
        lambda: md_status(kube, namespace, NAME).get("stableRevision") == canary,
        timeout=90,
    )
    run = step_run(kube, namespace, canary)
    assert run["phase"] == "Successful" and [m["successful"] for m in run["metrics"]] == [2], run
    assert [m["value"] for m in run["metrics"][0]["measurements"]] == [0.96, 0.96]
    made = kube.items(jobs_path(namespace), labelSelector=f"{jobs.JOB_LABEL}=metric")
    assert len(made) == 2  # one per round, each run once
