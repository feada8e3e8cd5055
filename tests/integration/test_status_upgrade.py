"""An operator upgrade mid-rollout: a status written by modelship 0.1 (flat canary fields) is read
back from the real API server, converted on the first pass, and the rollout carries on where it
was, with the old fields gone."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import pytest

from localworld.rollouts import ModelDeployments, at, revision
from modelship import plugin
from modelship.core.control import NotApplicable
from modelship.kube.reconciler import Reconciler
from modelship.kube.storage import Storage, deployments_path, route_path

from .mdhelpers import crd_installed, example, kube

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration

LOG = logging.getLogger("test-status-upgrade")
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}
NAME = "upgraded"


def manifest(image: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["metadata"]["name"] = NAME
    doc["spec"].update(
        {
            "image": image,
            "replicas": 2,
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {}}, {"setWeight": 100}]}},
            "traffic": {"router": "gatewayAPI", "httpRoute": NAME, "parentRefs": [{"name": "gw"}]},
        }
    )
    return doc


def passes_until(kube: Storage, namespace: str, done: Any, timeout: float = 90) -> dict[str, Any]:
    mds = ModelDeployments(kube, namespace)
    deadline = time.monotonic() + timeout
    while True:
        Reconciler(kube).step(namespace, NAME, LOG)
        status = mds.status(NAME)
        if done(status):
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(status)
        time.sleep(0.3)


def test_a_canary_paused_under_0_1_carries_on_after_the_upgrade(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    mds = ModelDeployments(kube, namespace)
    mds.create(manifest(IMAGES["a"]))
    stable = revision(manifest(IMAGES["a"]))
    passes_until(kube, namespace, lambda s: s.get("phase") == "Healthy" and s.get("stableRevision") == stable)
    mds.patch(NAME, {"image": IMAGES["b"]})
    canary = revision(manifest(IMAGES["b"]))
    paused = passes_until(kube, namespace, lambda s: at(s, "rollout.canary.step") == 1)
    pause_start = at(paused, "rollout.canary.pauseStartTime")
    pods_before = kube.get(deployments_path(namespace, canary))

    # What modelship 0.1 wrote for the same moment of the same rollout.
    obj = mds.get(NAME)
    assert obj is not None
    legacy = {
        "rollout": None,
        "canaryRevision": canary,
        "currentStep": 1,
        "canaryWeight": 50,
        "pauseStartTime": pause_start,
    }
    body = {"metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]}, "status": legacy}
    kube.merge(f"{mds.path(NAME)}/status", body)
    stored = mds.status(NAME)
    assert stored.get("canaryRevision") == canary and "rollout" not in stored  # kept, not pruned

    Reconciler(kube).step(namespace, NAME, LOG)  # the upgraded operator's first pass
    status = mds.status(NAME)
    assert at(status, "rollout.canary") == {
        "revision": canary,
        "step": 1,
        "weight": 50,
        "actualWeight": 50,  # worked out afresh on the first pass: 0.1 had no such field
        "pauseStartTime": pause_start,
    }
    assert not {"canaryRevision", "currentStep", "canaryWeight", "pauseStartTime"} & status.keys()
    assert status["phase"] == "Paused" and status["stableRevision"] == stable
    after = kube.get(deployments_path(namespace, canary))
    assert after is not None and pods_before is not None
    assert after["metadata"]["uid"] == pods_before["metadata"]["uid"]  # the same canary, not a new one
    rules = (kube.get(route_path(namespace, NAME)) or {})["spec"]["rules"]
    assert {r["name"]: r["weight"] for r in rules[0]["backendRefs"]} == {
        f"{NAME}-stable": 50,
        f"{NAME}-canary": 50,
    }

    # And it goes on: promote past the pause, to the end.
    with pytest.raises(NotApplicable):
        plugin.run_verb(kube, namespace, NAME, "retry")
    plugin.run_verb(kube, namespace, NAME, "promote")
    passes_until(kube, namespace, lambda s: s.get("stableRevision") == canary and s.get("phase") == "Healthy")
