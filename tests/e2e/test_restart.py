"""The fault-test helpers on the real node and the world: containerd, the kubelet, Prometheus and
Traefik each restarted by its pid (`LocalWorld.restart`), on the same ports, and each serving
again; a model pod keeps answering through Traefik all along."""

from __future__ import annotations

import time
from typing import Any

import pytest
from kubernetes import client

from devcluster import images, procs
from devcluster.cluster import LocalCluster
from devcluster.nodeconfig import NODE_NAME
from localworld.world import LocalWorld

from .helpers import RESTRICTED, deploy_revision, eventually, expose_routed, is_ready

pytestmark = pytest.mark.e2e


def pause_pod(name: str, image: str) -> dict[str, Any]:
    """The smallest pod the node can run: its own sandbox image as the container."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "pause", "image": image, "securityContext": RESTRICTED}]},
    }


def recorded(cluster: LocalCluster, name: str) -> procs.Record:
    return next(r for r in procs.records_under(cluster.state_dir) if r.name == name)


def test_node_and_world_components_restart_by_pid_and_serve_again(
    local_cluster: LocalCluster, world: LocalWorld, api_client: client.ApiClient, namespace: str
) -> None:
    assert local_cluster.node is not None
    core = client.CoreV1Api(api_client)
    deploy_revision(api_client, namespace, world, "risk", "v1", replicas=1)
    endpoint = expose_routed(world, namespace, "risk", {"risk": 100})
    pause = local_cluster.node.load([images.sandbox_image()])[images.sandbox_image()]
    urls = (world.prometheus.url, world.gateway.url)

    for name in ("containerd", "kubelet"):
        old = recorded(local_cluster, name)
        world.restart(name)
        assert not procs.is_running(old.pid, old.start)
        assert recorded(local_cluster, name).pid != old.pid
        # Pods run on through a restart of the node's parts (containerd's shims hold them) ...
        assert endpoint.answers()
        # ... and the node starts new ones again.
        core.create_namespaced_pod(namespace, pause_pod(f"after-{name}", pause))
        started = eventually(
            f"a new pod Ready after the {name} restart",
            lambda n=name: p if is_ready(p := core.read_namespaced_pod(f"after-{n}", namespace)) else None,
            timeout=30,
        )
        assert started.spec.node_name == NODE_NAME

    old = recorded(local_cluster, "prometheus")
    restarted_at = time.time()
    world.restart("prometheus")
    assert not procs.is_running(old.pid, old.start)
    # It discovers and scrapes the model pod again.
    eventually(
        "a scrape of the model pod after the Prometheus restart",
        lambda: any(
            float(s["value"][1]) > restarted_at
            for s in world.prometheus.query(f'timestamp(up{{namespace="{namespace}"}} == 1)')
        ),
        timeout=30,
    )

    old = recorded(local_cluster, "traefik")
    world.restart("traefik")
    assert not procs.is_running(old.pid, old.start)
    eventually("Traefik to route the model again", endpoint.answers, timeout=30)
    assert (world.prometheus.url, world.gateway.url) == urls
