"""Events people can read: a long analysis adds no Event per round. Each round bumps the
`series.count` of one events.k8s.io/v1 Event; transitions stay one Event each.

The real operator (a subprocess) runs an analysis step against Debian's real Prometheus. The
metric is the constant PromQL `vector(0)` (within `max: 1`, `minRequests: 0`), so every round is
Successful whatever the KWOK pods serve. 20 rounds at `interval: 1s` stand for a 10-minute
analysis at the default 30s.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from localworld.prometheus import Prometheus
from localworld.rollouts import at
from modelship.kube.storage import Storage, series_events_path

from .mdhelpers import Operator, crd_installed, deploy_stable, example, kube, md_path, operator, wait_until

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

NAME = "fraud-detector"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}
ROUNDS = 20


@pytest.fixture
def prometheus(api_client: client.ApiClient, tmp_path: Path) -> Iterator[Prometheus]:
    with Prometheus(api_client, tmp_path / "prometheus") as running:
        yield running


def manifest(image: str, prometheus: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    analysis = {
        "prometheus": {"address": prometheus},
        "interval": "1s",
        "count": 100,  # longer than the test: the run stays Running
        "minRequests": 0,
        "metrics": [{"name": "zero", "query": "vector(0)", "max": 1}],
    }
    doc["spec"].update(
        {
            "image": image,
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {}}]}},
            "analysis": analysis,
        }
    )
    return doc


def rounds(kube: Storage, namespace: str) -> int:
    """Successful rounds of the step analysis so far."""
    status = (kube.get(md_path(namespace, NAME)) or {}).get("status") or {}
    run = next((r for r in status.get("analysis") or [] if r["kind"] == "step"), None)
    return int(at(run, "metrics")[0]["successful"]) if run and run.get("metrics") else 0


def events(kube: Storage, namespace: str, uid: str) -> list[dict[str, Any]]:
    """Every Event object about the ModelDeployment, as events.k8s.io/v1 shows them."""
    items = kube.items(series_events_path(namespace))
    return [e for e in items if e["regarding"].get("uid") == uid]


def test_a_long_analysis_bumps_one_event_series_instead_of_adding_events(
    kube: Storage, namespace: str, operator: Operator, prometheus: Prometheus
) -> None:
    deploy_stable(kube, namespace, manifest(IMAGES["a"], prometheus.url))
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    uid = (kube.get(md_path(namespace, NAME)) or {})["metadata"]["uid"]
    wait_until("two analysis rounds", lambda: rounds(kube, namespace) >= 2, timeout=60)

    def measured() -> list[dict[str, Any]]:
        return [e for e in events(kube, namespace, uid) if e["reason"] == "AnalysisMeasured"]

    wait_until("the first repeat counted", lambda: at(measured()[0], "series.count", 0) >= 2, timeout=10)
    before, start = events(kube, namespace, uid), rounds(kube, namespace)
    wait_until(f"{ROUNDS} more rounds", lambda: rounds(kube, namespace) >= start + ROUNDS, timeout=50)
    done = rounds(kube, namespace)
    wait_until("the last round counted", lambda: at(measured()[0], "series.count") >= done, timeout=10)

    after = events(kube, namespace, uid)
    assert len(after) == len(before), [(e["reason"], e["note"]) for e in after if e not in before]
    [series] = measured()  # one Event for every round
    assert series["type"] == "Normal" and series["action"] == "Reconcile"
    assert done <= series["series"]["count"] <= done + 1  # a round may have been posted since
    assert series["series"]["lastObservedTime"] > series["eventTime"]
    assert "(each round's values: status.analysis)" in series["note"]
    # The transitions of this rollout are one Event each, none of them repeated.
    transitions = [e for e in after if e["reason"] != "AnalysisMeasured"]
    assert {"RolloutStarted", "WeightChanged", "AnalysisStarted"} <= {e["reason"] for e in transitions}
    assert all("series" not in e for e in transitions)
    # What `kubectl modelship status` and `kubectl get events` read: the core/v1 view, with the count.
    core = kube.events_of(namespace, uid)
    [shown] = [e for e in core if e["reason"] == "AnalysisMeasured"]
    assert shown["count"] >= done and shown["lastTimestamp"]
