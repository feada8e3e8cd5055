"""Two shards on one cluster (issue #20): each ModelDeployment is reconciled by exactly one operator,
chosen by its namespace's labels; an unlabelled namespace by neither; a relabelled namespace moves.
HA inside a shard: each shard has its own peering object, so shard a's standby stands by while
shard b's one replica (of lower priority than both) is active."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster
from devcluster.net import free_port
from modelship.kube.storage import Storage

from .mdhelpers import Operator, crd_installed, create_md, example, kube, md_path, wait_until
from .test_operator import NAME, healthy
from .test_operator_ha_metrics import metric

__all__ = ["crd_installed", "kube"]  # fixtures used by this module
pytestmark = pytest.mark.integration

SHARD = "modelship.io/shard"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def namespaces(api_client: client.ApiClient) -> Iterator[list[str]]:
    """Three fresh namespaces (labelled by the test), deleted afterwards."""
    core = client.CoreV1Api(api_client)
    names = [f"shard-{i}-{uuid.uuid4().hex[:6]}" for i in range(3)]
    for name in names:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    deadline = time.monotonic() + 30  # pods are refused until `default` exists
    for name in names:
        while not core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
            assert time.monotonic() < deadline, f"namespace {name}: no default ServiceAccount after 30s"
            time.sleep(0.2)
    yield names
    for name in names:
        core.delete_namespace(name)


def label(kube: Storage, namespace: str, value: str) -> None:
    kube.merge(f"/api/v1/namespaces/{namespace}", {"metadata": {"labels": {SHARD: value}}}, "test")


def test_each_model_deployment_is_reconciled_by_exactly_one_shard_and_moves_with_its_namespace(
    cluster: ExistingCluster,
    kube: Storage,
    namespaces: list[str],
    crd_installed: None,
    tmp_path: Path,
) -> None:
    in_a, in_b, unlabelled = namespaces
    # Values of this run only: the session's cluster may hold other tests' namespaces.
    run = uuid.uuid4().hex[:6]
    a, b = f"a-{run}", f"b-{run}"
    label(kube, in_a, a)
    label(kube, in_b, b)
    # As the chart makes them: a cluster-scoped peering object per shard, named after it.
    cluster.kubectl("apply", "--server-side", "-f", str(REPO / "charts/modelship/charts/kopf-peering/crds"))
    cluster.kubectl("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev")
    peerings = {a: f"ms-{a}", b: f"ms-{b}"}
    for name in peerings.values():
        cluster.kubectl(
            "apply",
            "-f",
            "-",
            input=f"apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata: {{name: {name}}}\n",
        )
    ports = {a: free_port(), b: free_port(), "standby": free_port()}

    def replica(shard: str, log: str, priority: int, port: int) -> Operator:
        # Cluster-wide, as the chart runs each shard: only the selector keeps them apart.
        flags = ["--shard-selector", f"{SHARD}={shard}", "--metrics-port", str(port)]
        flags += ["--peering", peerings[shard], "--priority", str(priority)]
        return Operator(cluster.env, tmp_path / f"{log}.log", args=flags)

    # Shard b's replica has the lowest priority: were the peering shared, it would stand by.
    shards = {a: replica(a, "shard-a", 20, ports[a]).start(), b: replica(b, "shard-b", 5, ports[b]).start()}
    standby = replica(a, "shard-a-standby", 10, ports["standby"])

    def peers(shard: str) -> int:
        return len(
            (kube.get(f"/apis/kopf.dev/v1/clusterkopfpeerings/{peerings[shard]}") or {}).get("status") or {}
        )

    def weight_series(shard: str, namespace: str) -> bool:
        """The replica's own per-object gauge: set by each of its passes, gone when it lets go."""
        return metric(ports[shard], "modelship_canary_weight", namespace=namespace, name=NAME) is not None

    try:
        # The standby joins once the active replica is in the peering, so it never starts alone.
        wait_until("shard a's active replica in its peering", lambda: peers(a) == 1)
        standby.start()
        wait_until("shard a: two replicas in its peering", lambda: peers(a) == 2)
        assert peers(b) == 1
        for namespace in namespaces:
            create_md(kube, namespace, example("basic.yaml"))
        untouched = kube.get(f"{md_path(unlabelled)}/{NAME}")
        assert untouched is not None
        wait_until("in_a and in_b Healthy", lambda: healthy(kube, in_a) and healthy(kube, in_b), timeout=60)
        wait_until("three passes of each shard", lambda: all(s.resync_passes() >= 3 for s in shards.values()))

        assert weight_series(a, in_a) and not weight_series(b, in_a), "in_a: shard a alone"
        assert weight_series(b, in_b) and not weight_series(a, in_b), "in_b: shard b alone"
        assert not weight_series(a, unlabelled) and not weight_series(b, unlabelled)
        assert metric(ports["standby"], "modelship_reconcile_duration_seconds_count") == 0, (
            "a standby reconciled"
        )
        # Nothing wrote to the unlabelled one: no status, no kopf annotation, not a byte.
        now = kube.get(f"{md_path(unlabelled)}/{NAME}")
        assert now is not None and "status" not in now
        assert now["metadata"]["resourceVersion"] == untouched["metadata"]["resourceVersion"]
        assert not kube.items(f"/apis/apps/v1/namespaces/{unlabelled}/deployments")

        label(kube, in_a, b)  # in_a moves to shard b, without a restart
        wait_until("shard b takes in_a over", lambda: weight_series(b, in_a), timeout=30)
        wait_until("shard a lets in_a go", lambda: not weight_series(a, in_a), timeout=30)
        cluster.kubectl("delete", "service", f"{NAME}-stable", "-n", in_a)
        wait_until(
            "shard b restores in_a's deleted Service",
            lambda: kube.get(f"/api/v1/namespaces/{in_a}/services/{NAME}-stable"),
            timeout=30,
        )
        before = shards[a].resync_passes()
        wait_until("two more passes of shard a", lambda: shards[a].resync_passes() >= before + 2)
        assert not weight_series(a, in_a), "shard a reconciled in_a after it left the shard"
    finally:
        for operator in (*shards.values(), standby):
            operator.stop()
            print(f"operator log: {operator.log_path}")
        for name in peerings.values():
            cluster.kubectl("delete", "clusterkopfpeering", name, check=False)
