"""Blue/green against the real API server: preview beside stable, promote swaps, undo swaps back."""

from __future__ import annotations

import time
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, kube, operator, wait_until
from .test_rollouts import (
    IMAGES,
    NAME,
    deploy_stable,
    manifest,
    plugin,
    pod_uids,
    revision,
    set_image,
    spec_replicas,
    status,
    until_status,
)

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration


def bg_manifest(image: str = IMAGES["a"]) -> dict[str, Any]:
    doc = manifest(image)
    doc["spec"]["strategy"] = {
        "blueGreen": {"autoPromote": False, "previewReplicas": 1, "scaleDownDelay": "60s"}
    }
    return doc


def selected(kube: Storage, namespace: str, service: str) -> str:
    obj = kube.get(f"/api/v1/namespaces/{namespace}/services/{service}") or {}
    return str(obj.get("spec", {}).get("selector", {}).get("modelship.io/revision", "*"))


def test_preview_then_promote_swaps_and_undo_swaps_back_without_new_pods(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    blue = deploy_stable(kube, namespace, bg_manifest())
    green = revision(bg_manifest(IMAGES["b"]))
    blue_pods = pod_uids(kube, namespace, blue)
    set_image(kube, namespace, IMAGES["b"])

    until_status(
        kube,
        namespace,
        "the preview ready and waiting",
        phase="Paused",
        **{"rollout.blueGreen.revision": green},
    )
    assert spec_replicas(kube, namespace) == {blue: 4, green: 1}
    # Services are applied right after the status is written: wait for them, do not race them.
    wait_until("the preview Service on green", lambda: selected(kube, namespace, f"{NAME}-preview") == green)
    assert selected(kube, namespace, NAME) == blue
    time.sleep(3)  # autoPromote is off: nothing switches by itself
    assert status(kube, namespace)["stableRevision"] == blue

    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "green promoted", stableRevision=green, phase="Healthy")
    wait_until("the active Service on green", lambda: selected(kube, namespace, NAME) == green)
    wait_until("the stable Service on green", lambda: selected(kube, namespace, f"{NAME}-stable") == green)
    assert spec_replicas(kube, namespace) == {blue: 4, green: 4}  # blue kept for scaleDownDelay

    plugin(cluster, "undo", NAME, "-n", namespace, "--apply")  # no GitOps tool here: patch the spec
    until_status(kube, namespace, "back to blue", stableRevision=blue)
    wait_until("the active Service back on blue", lambda: selected(kube, namespace, NAME) == blue)
    assert pod_uids(kube, namespace, blue) == blue_pods  # the same pods: no restart, no new ones
    assert spec_replicas(kube, namespace)[blue] == 4
