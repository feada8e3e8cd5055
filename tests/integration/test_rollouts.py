"""Canary rollouts against the real API server, steered with the kubectl plugin.

The operator runs as a subprocess (`python -m modelship run`); manual commands go
through `kubectl modelship ...` (kubectl finds `kubectl-modelship` on PATH). Pods are
KWOK pods: Ready a few seconds after scheduling, nothing really runs in them.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster
from localworld.rollouts import at
from modelship.kube import storage
from modelship.kube.storage import Storage

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
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "abcd"}
# Where a canary's fields live in the status.
REVISION, STEP, WEIGHT = "rollout.canary.revision", "rollout.canary.step", "rollout.canary.weight"
ABORTED = "rollout.aborted.revision"
STEPS = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]


def manifest(
    image: str = IMAGES["a"], steps: list[dict[str, Any]] | None = None, **spec: Any
) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"].update(
        {
            "image": image,
            "replicas": 4,
            "strategy": {"canary": {"steps": steps or STEPS, "scaleDownDelay": "3s"}},
            **spec,
        }
    )
    return doc


def status(kube: Storage, namespace: str) -> dict[str, Any]:
    return md_status(kube, namespace, NAME)


def spec_replicas(kube: Storage, namespace: str) -> dict[str, int]:
    items = kube.items(storage.deployments_path(namespace), labelSelector="modelship.io/model")
    return {d["metadata"]["name"]: d["spec"]["replicas"] for d in items}


def pod_uids(kube: Storage, namespace: str, rev: str) -> set[str]:
    pods = kube.items(storage.pods_path(namespace), labelSelector=f"modelship.io/revision={rev}")
    return {p["metadata"]["uid"] for p in pods if not p["metadata"].get("deletionTimestamp")}


def event_reasons(kube: Storage, namespace: str) -> list[str]:
    items = kube.items(storage.events_path(namespace), fieldSelector=f"involvedObject.name={NAME}")
    return [e["reason"] for e in items]


def wait_for_event(kube: Storage, namespace: str, reason: str) -> None:
    # Events are posted after the status and the children are written: wait, do not assume.
    wait_until(f"a {reason} event", lambda: reason in event_reasons(kube, namespace), timeout=30)


def set_image(kube: Storage, namespace: str, image: str) -> None:
    kube.merge(md_path(namespace, NAME), {"spec": {"image": image}}, "modelship-tests")


def plugin(cluster: ExistingCluster, *args: str) -> str:
    """`kubectl modelship ...`: kubectl's own plugin lookup, with our virtualenv on PATH."""
    env = {**cluster.env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{cluster.env['PATH']}"}
    done = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "modelship", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def until_status(kube: Storage, namespace: str, what: str, **fields: Any) -> dict[str, Any]:
    """The status once every field (a dotted path, `rollout.canary.weight`) has its value."""

    def probe() -> dict[str, Any] | None:
        current = status(kube, namespace)
        return current if all(at(current, k) == v for k, v in fields.items()) else None

    return wait_until(what, probe, timeout=90, interval=0.2)


def test_canary_20_pause_50_pause_promote_with_the_service_router(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    stable = deploy_stable(kube, namespace, manifest())
    new = manifest(IMAGES["b"])
    canary = revision(new)
    set_image(kube, namespace, IMAGES["b"])

    # Record what the weights and replica counts go through, in order.
    seen: list[tuple[int | None, int, int]] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        current, replicas = status(kube, namespace), spec_replicas(kube, namespace)
        point = (at(current, "rollout.canary.weight"), replicas.get(stable, 0), replicas.get(canary, 0))
        if not seen or seen[-1] != point:
            seen.append(point)
        if at(current, "rollout.canary.step") == 3 and point == (50, 2, 2):
            break
        time.sleep(0.2)
    assert (20, 3, 1) in seen and (50, 2, 2) in seen, seen
    assert seen.index((20, 3, 1)) < seen.index((50, 2, 2))
    assert max(w or 0 for w, _, _ in seen) == 50

    current = status(kube, namespace)
    assert (current["phase"], at(current, "rollout.canary.revision"), current["stableRevision"]) == (
        "Paused",
        canary,
        stable,
    )
    paused = next(c for c in current["conditions"] if c["type"] == "Paused")
    assert paused["reason"] == "CanaryPauseStep"
    time.sleep(3)  # pause{} holds
    assert at(status(kube, namespace), "rollout.canary.step") == 3
    wait_until("2 canary pods", lambda: len(pod_uids(kube, namespace, canary)) == 2)
    canary_pods = pod_uids(kube, namespace, canary)

    assert "promoted" in plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "the canary promoted to stable", stableRevision=canary, phase="Healthy")
    # The pods that were the canary serve on as stable: not restarted.
    assert canary_pods <= pod_uids(kube, namespace, canary)
    assert spec_replicas(kube, namespace)[canary] == 4
    assert status(kube, namespace).get("scaleDownRevision") == stable
    wait_until(
        "the old revision deleted after scaleDownDelay", lambda: stable not in spec_replicas(kube, namespace)
    )
    wait_until("no pods of the old revision", lambda: not pod_uids(kube, namespace, stable), timeout=60)
    for reason in ("RolloutStarted", "WeightChanged", "PauseStarted", "Promoted", "ScaledDown"):
        wait_for_event(kube, namespace, reason)
    service = kube.get(f"/api/v1/namespaces/{namespace}/services/{NAME}") or {}
    assert service["spec"]["selector"]["modelship.io/revision"] == canary


def test_abort_pause_retry_resume_and_promote_full_with_the_plugin(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    stable = deploy_stable(kube, namespace, manifest())
    canary = revision(manifest(IMAGES["b"]))
    set_image(kube, namespace, IMAGES["b"])
    until_status(kube, namespace, "the canary at 20%", **{REVISION: canary, WEIGHT: 20})

    assert "aborted" in plugin(cluster, "abort", NAME, "-n", namespace)
    aborted = until_status(kube, namespace, "phase Degraded", phase="Degraded", **{ABORTED: canary})
    assert "canary" not in aborted["rollout"]
    assert next(c for c in aborted["conditions"] if c["type"] == "Progressing")["reason"] == "Aborted"
    wait_until("canary at 0, stable at 4", lambda: spec_replicas(kube, namespace) == {stable: 4, canary: 0})
    wait_for_event(kube, namespace, "Aborted")

    # Paused before the retry: the restarted rollout holds at step 0, weight 0.
    plugin(cluster, "pause", NAME, "-n", namespace)
    plugin(cluster, "retry", NAME, "-n", namespace)
    held = until_status(kube, namespace, "the retried canary, paused", phase="Paused", **{REVISION: canary})
    assert next(c for c in held["conditions"] if c["type"] == "Paused")["reason"] == "PausedByUser"
    time.sleep(4)  # nothing moves while paused
    assert (at(status(kube, namespace), WEIGHT), at(status(kube, namespace), STEP)) == (0, 0)
    plugin(cluster, "resume", NAME, "-n", namespace)
    until_status(kube, namespace, "the canary at 50% after resume", **{WEIGHT: 50, STEP: 3})

    view = plugin(cluster, "status", NAME, "-n", namespace)
    assert f"Canary:     {canary}" in view and "Step:       3/4" in view and "50% canary" in view

    plugin(cluster, "promote", NAME, "-n", namespace, "--full")
    until_status(kube, namespace, "promoted by promote --full", stableRevision=canary, phase="Healthy")
    watched = plugin(cluster, "status", NAME, "-n", namespace, "--watch")
    assert "Phase:      Healthy" in watched


def test_new_digest_mid_rollout_restarts_and_revert_rolls_back(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    stable = deploy_stable(kube, namespace, manifest())
    first, second = revision(manifest(IMAGES["b"])), revision(manifest(IMAGES["c"]))
    set_image(kube, namespace, IMAGES["b"])
    until_status(kube, namespace, "the first canary at 20%", **{REVISION: first, WEIGHT: 20})

    set_image(kube, namespace, IMAGES["c"])
    restarted = until_status(kube, namespace, "the second canary", **{REVISION: second})
    assert at(restarted, STEP) in (0, 1)
    wait_until("the first canary deleted", lambda: first not in spec_replicas(kube, namespace))
    wait_for_event(kube, namespace, "CanaryReplaced")
    until_status(kube, namespace, "the second canary at 20%", **{REVISION: second, WEIGHT: 20})

    set_image(kube, namespace, IMAGES["a"])
    until_status(kube, namespace, "rolled back", phase="RolledBack", stableRevision=stable)
    wait_until("only the stable revision at 4", lambda: spec_replicas(kube, namespace) == {stable: 4})
    wait_for_event(kube, namespace, "RolledBack")


def test_an_unschedulable_canary_is_aborted_at_the_progress_deadline(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    # The short deadline comes with the canary: on a busy machine the first deploy may need longer.
    stable = deploy_stable(kube, namespace, manifest())
    limits = {"example.com/no-such-device": 1}
    spec = {"progressDeadline": "15s", "resources": {"limits": limits}}
    kube.merge(md_path(namespace, NAME), {"spec": spec}, "modelship-tests")
    aborted = until_status(kube, namespace, "aborted at the deadline", phase="Degraded")
    canary = at(aborted, ABORTED)
    assert canary != stable and "canary" not in aborted["rollout"]
    progressing = next(c for c in aborted["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "ProgressDeadlineExceeded"
    wait_until("canary at 0, stable at 4", lambda: spec_replicas(kube, namespace) == {stable: 4, canary: 0})
    wait_for_event(kube, namespace, "ProgressDeadlineExceeded")
