"""`kubectl wait --for=condition=Ready md/NAME`, with the kubectl built for the local cluster: it
returns once a rollout is done, and times out while one is in flight (held at a pause step)."""

from __future__ import annotations

import subprocess

import pytest

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage

from .gitopshelpers import IMAGES, NAME, at_pause, condition, manifest, read, set_image, verb
from .mdhelpers import Operator, crd_installed, deploy_stable, kube, operator, revision

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration


def kubectl_wait(
    cluster: ExistingCluster, namespace: str, timeout: str, *more: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(cluster.bin_dir / "kubectl"),
            "wait",
            "-n",
            namespace,
            f"md/{NAME}",
            f"--timeout={timeout}",
            *more,
        ],
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_kubectl_wait_for_ready_succeeds_after_a_rollout_and_times_out_during_one(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    deploy_stable(kube, namespace, manifest())
    done = kubectl_wait(cluster, namespace, "30s", "--for=condition=Ready")
    assert done.returncode == 0 and "condition met" in done.stdout, done.stderr

    set_image(kube, namespace, IMAGES["b"])
    # At once, before the operator saw the new spec: kubectl wait compares each condition's
    # observedGeneration with the object's generation, so the old Ready=True does not count.
    early = kubectl_wait(cluster, namespace, "1s", "--for=condition=Ready")
    assert early.returncode != 0 and "timed out" in early.stderr, (early.stdout, early.stderr)
    held = at_pause(kube, namespace, step=1)
    assert condition(held, "Ready")["status"] == "False"  # type: ignore[index]
    done = kubectl_wait(cluster, namespace, "3s", "--for=condition=Ready")
    assert done.returncode != 0 and "timed out" in done.stderr, (done.stdout, done.stderr)
    # Work in flight, and nothing stuck: the kstatus pair says so too.
    assert kubectl_wait(cluster, namespace, "1s", "--for=condition=Reconciling").returncode == 0
    assert kubectl_wait(cluster, namespace, "1s", "--for=condition=Stalled=false").returncode == 0

    verb(kube, namespace, "promote", full=True)
    done = kubectl_wait(cluster, namespace, "60s", "--for=condition=Ready")
    assert done.returncode == 0 and "condition met" in done.stdout, done.stderr
    assert read(kube, namespace)["status"]["stableRevision"] == revision(manifest(IMAGES["b"]))
