"""Offline evaluation before any traffic, end to end: the real operator runs an evaluation Job on
the real node (the candidate's own image as `modelserver evaluate`, scoring `<name>-canary` and
`<name>-stable` on the bundle's labelled holdout), reads its termination message and judges it.

v3-inaccurate (trained on shuffled labels) is refused while user load flows through Traefik: its
pods answer the evaluation's requests and not one more. v2 passes and goes on to take traffic."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client

from localworld.rollouts import at, rolling_revision

from .conftest import Rollout
from .helpers import eventually

pytestmark = pytest.mark.e2e

NAME = "risk"
EVALUATION = {"min": 0.8, "maxDropVsStable": 0.05}
STEPS: list[dict[str, Any]] = [{"evaluation": EVALUATION}, {"setWeight": 50}, {"pause": {"duration": "3s"}}]
RATE = 20.0


def progressing(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == "Progressing")


def evaluation_run(status: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in status.get("analysis") or [] if r["kind"] == "evaluation")


def job_report(r: Rollout) -> dict[str, Any]:
    """The evaluation Job's result, as its pod's termination message holds it."""
    pods = r.core.list_namespaced_pod(r.namespace, label_selector="modelship.io/job=evaluation").items
    [pod] = pods
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated is not None and terminated.exit_code == 0, terminated
    report: dict[str, Any] = json.loads(terminated.message)
    return report


def started(r: Rollout) -> str:
    """v1 Healthy under load through Traefik; its revision."""
    r.apply(NAME, "v1", STEPS)
    v1 = str(r.mds.wait_phase(NAME, "Healthy")["stableRevision"])
    load = r.load(r.endpoint(NAME), rate=RATE, duration=300)
    eventually("v1 to answer through Traefik", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)
    return v1


def test_v3_inaccurate_is_refused_by_evaluation_with_no_user_request_served(rollout: Rollout) -> None:
    v1 = started(rollout)
    began = time.monotonic()
    rollout.set_image(NAME, "v3-inaccurate")
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=240)
    seconds = time.monotonic() - began
    condition = progressing(status)
    assert condition["reason"] == "EvaluationFailed", condition
    assert "below min 0.8" in condition["message"], condition
    assert status["stableRevision"] == v1 and not rolling_revision(status)
    run = evaluation_run(status)
    measured = run["metrics"][0]["measurements"][-1]
    assert run["phase"] == "Failed" and measured["value"] < 0.4 < 0.8 < measured["stableValue"], run
    report = job_report(rollout)
    assert report["examples"] == 1000 and report["value"] == measured["value"], report
    # The refused revision's pods (kept for abortScaleDownDelay) counted their own predictions:
    # the evaluation's requests, and not one user request.
    canary = at(status, "rollout.aborted.revision")
    served = rollout.served()
    assert served[canary] == report["requests"] > 0, (served, report)
    assert served[v1] > 0
    print(f"v3-inaccurate refused by evaluation in {seconds:.1f}s; user requests it served: 0")


def test_v2_passes_evaluation_and_then_takes_traffic(rollout: Rollout) -> None:
    v1 = started(rollout)
    rollout.set_image(NAME, "v2")
    final = eventually(
        "v2 to be promoted",
        lambda: (s := rollout.mds.status(NAME)).get("stableRevision") not in (None, v1) and s,
        timeout=240,
    )
    run = evaluation_run(final)
    measured = run["metrics"][0]["measurements"][-1]
    assert run["phase"] == "Successful" and measured["verdict"] == "Successful", run
    assert measured["value"] > 0.85 and measured["value"] >= measured["stableValue"] - 0.05, measured
    assert job_report(rollout)["examples"] == 1000
    served = rollout.served()
    assert served[final["stableRevision"]] > job_report(rollout)["requests"]  # users reached it
    [job] = (
        client.BatchV1Api(rollout.core.api_client)
        .list_namespaced_job(rollout.namespace, label_selector="modelship.io/job=evaluation")
        .items
    )
    [owner] = job.metadata.owner_references  # deleted with the ModelDeployment
    assert (owner.kind, owner.name, owner.controller) == ("ModelDeployment", NAME, True)
