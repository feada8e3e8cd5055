"""The operator's own /metrics, and HA: only the active replica reconciles; a standby takes over."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from devcluster.cluster import ExistingCluster, free_port
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, kube, operator_in, wait_until
from .test_operator import NAME, deploy_basic

__all__ = ["crd_installed", "kube"]  # fixtures used by this module
pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def metric(port: int, metric_name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == metric_name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_operator_metrics_describe_the_basic_example(
    cluster: ExistingCluster, kube: Storage, namespace: str, crd_installed: None, tmp_path: Path
) -> None:
    port = free_port()
    operator = operator_in(cluster, namespace, tmp_path / "op.log", ["--metrics-port", str(port)]).start()
    try:
        deploy_basic(kube, namespace)
        wait_until(
            "rollouts{phase=Healthy} = 1", lambda: metric(port, "modelship_rollouts", phase="Healthy") == 1
        )
        assert metric(port, "modelship_rollouts", phase="Degraded") == 0
        assert metric(port, "modelship_canary_weight", namespace=namespace, name=NAME) == 0
        assert (metric(port, "modelship_reconcile_duration_seconds_count") or 0) > 0
    finally:
        operator.stop()


def test_only_the_active_replica_reconciles_and_a_standby_takes_over(
    cluster: ExistingCluster, kube: Storage, namespace: str, crd_installed: None, tmp_path: Path
) -> None:
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "charts/modelship/charts/kopf-peering/crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/kopfpeerings.kopf.dev")
    cluster.kubectl(
        "apply",
        "-f",
        "-",
        input=f"apiVersion: kopf.dev/v1\nkind: KopfPeering\nmetadata: {{name: ms, namespace: {namespace}}}\n",
    )
    peering_path = f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings/ms"

    def peers() -> int:
        return len((kube.get(peering_path) or {}).get("status") or {})

    def replica(name: str, priority: int, port: int) -> Operator:
        args = ["--peering", "ms", "--priority", str(priority), "--metrics-port", str(port)]
        return operator_in(cluster, namespace, tmp_path / f"{name}.log", args)

    port_a, port_b = free_port(), free_port()
    active = replica("active", 20, port_a).start()
    standby = replica("standby", 10, port_b)
    try:
        wait_until("the first replica in the peering object", lambda: peers() == 1)
        deploy_basic(kube, namespace)
        standby.start()
        wait_until("both replicas in the peering object", lambda: peers() == 2)
        wait_until("three more resync passes of the active replica", lambda: active.resync_passes() >= 3)
        before = active.resync_passes()
        wait_until("three more passes", lambda: active.resync_passes() >= before + 3, timeout=30)
        assert metric(port_b, "modelship_reconcile_duration_seconds_count") == 0, "the standby reconciled"

        active.stop()
        wait_until("the active replica to leave the peering object", lambda: peers() == 1)
        cluster.kubectl("delete", "service", f"{NAME}-stable", "-n", namespace)
        wait_until(
            "the standby to restore the deleted Service",
            lambda: kube.get(f"/api/v1/namespaces/{namespace}/services/{NAME}-stable"),
            timeout=60,
        )
        assert (metric(port_b, "modelship_reconcile_duration_seconds_count") or 0) > 0
    finally:
        active.stop()
        standby.stop()
