"""A blue/green preview judged with traffic from a load-test step, end to end on the real node.

The test sends no request to the preview: the operator's load-test Job (the preview's own image as
`modelserver load`, aimed at `<name>-preview`, with feedback labels) is its only traffic, and the
pre-promotion analysis judges those requests through the world's Prometheus. v2 passes and is
switched to; v3-bad-errors (30% of predictions answered 500) fails and is never switched to.
Users keep calling the active route meanwhile and are answered by the stable colour only."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from localworld import demomodels
from localworld.rollouts import at, model_deployment

from .conftest import Rollout
from .helpers import eventually

pytestmark = pytest.mark.e2e

NAME = "risk"
# Scrape every 2s (the world's); measure every 3s over 20s windows; a run passes after 2 good
# rounds and, with no request (minRequests), stays inconclusive rather than pass.
ANALYSIS = demomodels.analysis(
    "3s", accuracy=True, count=2, window="20s", minRequests=5, inconclusiveLimit=20
)
LOAD = {"rate": 20, "duration": "90s", "feedbackRatio": 0.5, "startTimeout": "2m"}
USER_RATE = 10.0


def create(r: Rollout) -> str:
    """v1, blue/green with a pre-promotion analysis fed by a load test; Healthy; its revision."""
    manifest = model_deployment(NAME, r.world.image("v1"), "v1", [], analysis=ANALYSIS)
    manifest["spec"]["strategy"] = {
        "blueGreen": {
            "autoPromote": True,
            "scaleDownDelay": "5s",
            "abortScaleDownDelay": "30s",
            "prePromotionAnalysis": True,
            "prePromotionLoadTest": LOAD,
        }
    }
    r.create(manifest)
    return str(r.mds.wait_phase(NAME, "Healthy")["stableRevision"])


def pre_promotion(status: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in status.get("analysis") or [] if r["kind"] == "prePromotion")


def load_jobs(r: Rollout) -> list[client.V1Job]:
    batch = client.BatchV1Api(r.core.api_client)
    jobs: list[client.V1Job] = batch.list_namespaced_job(
        r.namespace, label_selector="modelship.io/job=load"
    ).items
    return jobs


def test_a_blue_green_preview_is_judged_on_the_traffic_of_its_load_test_alone(rollout: Rollout) -> None:
    v1 = create(rollout)
    users = rollout.load(rollout.endpoint(NAME), rate=USER_RATE, duration=400, feedback_ratio=0.0)
    eventually("v1 to answer through Traefik", lambda: users.summary().codes.get(200, 0) >= 10, timeout=60)

    began = time.monotonic()
    rollout.set_image(NAME, "v2")
    [job] = eventually("the preview's load Job", lambda: load_jobs(rollout) or None, timeout=300)
    [container] = job.spec.template.spec.containers
    assert container.args[:3] == ["load", "--url", "http://$(RISK_PREVIEW_SERVICE_HOST):80"], container.args
    [owner] = job.metadata.owner_references  # deleted with the ModelDeployment
    assert (owner.kind, owner.name) == ("ModelDeployment", NAME)
    promoted = eventually(
        "v2 to be switched to",
        lambda: (s := rollout.mds.status(NAME)).get("stableRevision") not in (None, v1) and s,
        timeout=300,
    )
    v2 = promoted["stableRevision"]
    run = pre_promotion(promoted)
    assert run["phase"] == "Successful" and run["revision"] == v2, run
    errors = next(m for m in run["metrics"] if m["name"] == "error-rate")
    accuracy = next(m for m in run["metrics"] if m["name"] == "accuracy")
    assert errors["successful"] >= 2 and accuracy["measurements"][-1]["value"] > 0.6, run
    # The load stops with the rollout it served: the promotion deletes its Job.
    eventually("the load Job stopped at the switch", lambda: not load_jobs(rollout), timeout=60)
    print(f"v2 judged on its load test's traffic and switched to in {time.monotonic() - began:.1f}s")

    # v3-bad-errors: judged on the same kind of load, it fails and is never switched to.
    rollout.set_image(NAME, "v3-bad-errors")
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=300)
    condition = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert condition["reason"] == "AnalysisFailed", condition
    assert status["stableRevision"] == v2
    bad = at(status, "rollout.aborted.revision")
    run = pre_promotion(status)
    assert run["revision"] == bad and run["phase"] == "Failed", run
    # The refused preview's pods (kept for abortScaleDownDelay) were called by its load Job only,
    # which the abort stopped.
    eventually("the load Job stopped at the abort", lambda: not load_jobs(rollout), timeout=60)
    served = rollout.served()
    assert served[bad] > 0, served
    summary = users.summary()
    assert 500 not in summary.codes, summary.lines()  # no user reached v3-bad-errors
    print(
        f"v3-bad-errors refused on its load test's traffic ({served[bad]} requests); users: {summary.lines()}"
    )
