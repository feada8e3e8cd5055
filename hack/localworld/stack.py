"""Everything `make demo` and `make bench-rollback` run, started in one place: the local
cluster, the world with the demo models, the CRD, a namespace and the operator (told where
the world's Prometheus is, for analysis).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from kubernetes import client, config

from devcluster.cluster import LocalCluster
from localworld.prometheus import DEFAULT_INTERVAL
from localworld.rollouts import OperatorProcess, install_crd
from localworld.world import LocalWorld


@dataclass(frozen=True)
class Stack:
    api: client.ApiClient
    world: LocalWorld
    operator: OperatorProcess


def start(
    cluster: LocalCluster,
    cleanup: contextlib.ExitStack,
    namespace: str,
    scrape_interval: str = DEFAULT_INTERVAL,
    say: Callable[[str], None] = lambda _: None,
) -> Stack:
    """Start `cluster` and the rest on it. Each part's stop goes on `cleanup` before the part
    starts, so closing it tears down whatever came up, in reverse, even after a failed start.
    The caller creates the cluster (and its cleanup) first, to keep its logs when it fails."""
    say(f"starting the local cluster (state and logs: {cluster.state_dir}) ...")
    cluster.start()
    api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
    say("starting the local world: demo models, pod runner, Prometheus ...")
    world = LocalWorld(api, cluster.state_dir / "localworld", scrape_interval, demo_models=True)
    cleanup.callback(world.stop)
    world.start()
    say(f"Prometheus: {world.prometheus.url}")
    install_crd(api)
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    operator = OperatorProcess(
        cluster.env,
        cluster.state_dir / "operator.log",
        namespaces=[namespace],
        args=["--prometheus-address", world.prometheus.url],
    )
    cleanup.callback(operator.stop)
    operator.start()
    say(f"operator running (log: {operator.log_path})")
    return Stack(api, world, operator)
