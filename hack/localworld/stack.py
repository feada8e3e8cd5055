"""Everything `make demo` and `make bench-rollback` run, started in one place: the local cluster
with its real node, the world (model images on the node, Prometheus, Traefik), the CRD, a
namespace on the real node under Pod Security `restricted`, and the operator.

The operator is installed with Helm and runs as a pod (`in_cluster`, the default), as users run
it; or, for quick iteration on the operator's code, as a process on this machine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client, config

from devcluster.cluster import LocalCluster
from localworld.install import Installed, helm_install
from localworld.prometheus import DEFAULT_INTERVAL
from localworld.rollouts import OperatorProcess, install_crd
from localworld.world import LocalWorld, pin_namespace


@dataclass(frozen=True)
class Stack:
    api: client.ApiClient
    world: LocalWorld
    operator: Installed | OperatorProcess


def start(
    cluster: LocalCluster,
    cleanup: contextlib.ExitStack,
    namespace: str,
    scrape_interval: str = DEFAULT_INTERVAL,
    in_cluster: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> Stack:
    """Start `cluster` and the rest on it. Each part's stop goes on `cleanup` before the part
    starts, so closing it tears down whatever came up, in reverse, even after a failed start.
    The caller creates the cluster (with real_node=True) and its cleanup first, to keep its logs
    when it fails."""
    say(f"starting the local cluster and its real node (state and logs: {cluster.state_dir}) ...")
    cluster.start()
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    say("starting the local world: model images onto the node, Prometheus, Traefik ...")
    world = LocalWorld(cluster, api, cluster.state_dir / "localworld", scrape_interval)
    cleanup.callback(world.stop)
    world.start()
    say(f"Prometheus: {world.prometheus.url}; gateway (Traefik): {world.gateway.url}")
    install_crd(api)
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    pin_namespace(api, namespace)
    operator: Installed | OperatorProcess
    if in_cluster:
        say(f"helm install of charts/modelship, operator image {world.operator_image} ...")
        operator = helm_install(cluster, api, world.operator_image, world.prometheus.url, watch=[namespace])
        say(f"operator running as pod {operator.namespace}/{operator.pod}")
    else:
        operator = OperatorProcess(
            cluster.env,
            cluster.state_dir / "operator.log",
            namespaces=[namespace],
            args=["--prometheus-address", world.prometheus.url],
        )
        cleanup.callback(operator.stop)
        operator.start()
        say(f"operator running as a process on this machine (log: {operator.log_path})")
    return Stack(api, world, operator)
