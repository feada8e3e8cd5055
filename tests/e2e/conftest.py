"""The local world for e2e tests: the cluster (root conftest) plus what runs its pods.

Session-scoped: one catalogue of sample images and one pod runner for the whole run,
stopped (every process it started ended) after the last test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster, LocalCluster
from localworld.catalogue import Catalogue, build_samples
from localworld.podrunner import PodRunner
from localworld.prometheus import Prometheus
from localworld.router import Router

SCRAPE_INTERVAL = "2s"


@pytest.fixture(scope="session")
def local_cluster(cluster: ExistingCluster) -> LocalCluster:
    # The pod runner stands in for the kubelets of KWOK's fake nodes; a real cluster runs
    # its pods itself and has no use for it.
    if not isinstance(cluster, LocalCluster):
        raise RuntimeError("the local world's e2e tests need the local control plane (unset KUBECONFIG)")
    return cluster


@pytest.fixture(scope="session")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Catalogue:
    return build_samples(tmp_path_factory.mktemp("localworld"))


@pytest.fixture(scope="session")
def pod_runner(
    local_cluster: LocalCluster, api_client: client.ApiClient, catalogue: Catalogue
) -> Iterator[PodRunner]:
    runner = PodRunner(api_client, catalogue, log_dir=local_cluster.state_dir / "pods")
    with runner:
        yield runner


@pytest.fixture(scope="session")
def prometheus(
    local_cluster: LocalCluster, api_client: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    # Fails (PrometheusMissing, with the install command) when the package is absent.
    with Prometheus(api_client, tmp_path_factory.mktemp("prometheus"), interval=SCRAPE_INTERVAL) as prom:
        yield prom


@pytest.fixture
def make_router(
    local_cluster: LocalCluster, api_client: client.ApiClient
) -> Iterator[Callable[[str, str], Router]]:
    """router(namespace, name): a started Router for that HTTPRoute or Service, stopped after the test."""
    started: list[Router] = []

    def make(namespace: str, name: str) -> Router:
        router = Router(api_client, namespace, name)
        router.start()
        started.append(router)
        return router

    yield make
    for router in started:
        router.stop()
