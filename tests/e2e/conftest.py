"""The local world for e2e tests: the cluster (root conftest) plus what runs its pods.

`world` is session-scoped: one catalogue of sample images, one pod runner and one Prometheus
for the whole run, stopped (every process they started ended) after the last test.
`catalogue`, `pod_runner` and `prometheus` are its parts; `make_router` gives routers that
are stopped after each test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster, LocalCluster
from localworld.catalogue import Catalogue
from localworld.podrunner import PodRunner
from localworld.prometheus import Prometheus
from localworld.router import Router
from localworld.world import LocalWorld

SCRAPE_INTERVAL = "2s"


@pytest.fixture(scope="session")
def local_cluster(cluster: ExistingCluster) -> LocalCluster:
    # The pod runner stands in for the kubelets of KWOK's fake nodes; a real cluster runs
    # its pods itself and has no use for it.
    if not isinstance(cluster, LocalCluster):
        raise RuntimeError("the local world's e2e tests need the local control plane (unset KUBECONFIG)")
    return cluster


@pytest.fixture(scope="session")
def world(local_cluster: LocalCluster, api_client: client.ApiClient) -> Iterator[LocalWorld]:
    # Fails (PrometheusMissing, with the install command) when Prometheus is absent.
    with LocalWorld(api_client, local_cluster.state_dir / "localworld", scrape_interval=SCRAPE_INTERVAL) as w:
        yield w


@pytest.fixture(scope="session")
def catalogue(world: LocalWorld) -> Catalogue:
    return world.catalogue


@pytest.fixture(scope="session")
def pod_runner(world: LocalWorld) -> PodRunner:
    return world.pod_runner


@pytest.fixture(scope="session")
def prometheus(world: LocalWorld) -> Prometheus:
    return world.prometheus


@pytest.fixture
def make_router(world: LocalWorld) -> Iterator[Callable[[str, str], Router]]:
    """make_router(namespace, name): a started Router for an HTTPRoute or Service, stopped after the test."""
    started: list[Router] = []

    def make(namespace: str, name: str) -> Router:
        router = world.router(namespace, name)
        started.append(router)
        return router

    yield make
    for router in started:
        router.stop()
        world.routers.remove(router)
