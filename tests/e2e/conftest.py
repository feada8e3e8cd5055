"""The local world for e2e tests: the cluster (root conftest) plus what runs its pods.

`world` is session-scoped: one catalogue of sample and demo images, one pod runner and one
Prometheus for the whole run, stopped (every process they started ended) after the last test.
`catalogue`, `pod_runner` and `prometheus` are its parts; `make_router` gives routers that
are stopped after each test. `operator` runs the real operator (CRD installed) on the test's
namespace; `rollout` applies ModelDeployments of catalogue images there, with a router and
background load (`localworld.rollouts`, `loadgen`), all stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster, LocalCluster
from loadgen import Load
from loadgen.mix import holdout_samples
from localworld.catalogue import Catalogue
from localworld.podnetwork import PodNetwork
from localworld.podrunner import PodRunner
from localworld.prometheus import Prometheus
from localworld.rollouts import ModelDeployments, OperatorProcess, install_crd, model_deployment, model_spec
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
    state = local_cluster.state_dir / "localworld"
    with LocalWorld(api_client, state, scrape_interval=SCRAPE_INTERVAL, demo_models=True) as w:
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


@pytest.fixture(scope="session")
def crd_installed(world: LocalWorld, api_client: client.ApiClient) -> None:
    install_crd(api_client)


@pytest.fixture
def operator(
    local_cluster: LocalCluster, world: LocalWorld, namespace: str, crd_installed: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The real operator (`python -m modelship run`), watching the test's namespace, set up as the
    chart would set it up in this world: analysis queries the world's Prometheus, and pod IPs are
    reached through the pod network (the smoke test)."""
    with PodNetwork() as net:
        env = {**local_cluster.env, **net.client_env()}
        args = ["--prometheus-address", world.prometheus.url]
        op = OperatorProcess(env, tmp_path / "operator.log", namespaces=[namespace], args=args).start()
        try:
            yield op
        finally:
            op.stop()
        # Shown by pytest only when the test failed.
        print(f"operator log: {op.log_path}")
        print(
            local_cluster.kubectl(
                "get",
                "modeldeployments,deployments,pods,httproutes",
                "-o",
                "wide",
                "-n",
                namespace,
                check=False,
            )
        )


class Rollout:
    """ModelDeployments of catalogue images in one namespace, with routers and load around them."""

    def __init__(self, world: LocalWorld, api_client: client.ApiClient, namespace: str) -> None:
        self.world, self.namespace = world, namespace
        self.mds = ModelDeployments(api_client, namespace)
        self.routers: list[Router] = []
        self.loads: list[Load] = []

    def apply(self, name: str, image: str, steps: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """Create ModelDeployment `name` on catalogue image `image` (its name is the model version)."""
        return self.mds.create(
            model_deployment(name, self.world.catalogue.by_name(image), image, steps, **kwargs)
        )

    def set_image(self, name: str, image: str) -> None:
        self.mds.patch(name, model_spec(self.world.catalogue.by_name(image), image, name))

    def router(self, name: str) -> Router:
        router = self.world.router(self.namespace, name)
        self.routers.append(router)
        return router

    def load(self, router: Router, rate: float, duration: float, feedback_ratio: float = 0.5) -> Load:
        """Background load of the demo holdout rows through `router`, with feedback."""
        load = Load(f"{router.url}/predict", holdout_samples(), rate, duration, feedback_ratio=feedback_ratio)
        self.loads.append(load.start())
        return load

    def close(self) -> None:
        for load in self.loads:
            load.stop()
        for router in self.routers:
            router.stop()
            self.world.routers.remove(router)


@pytest.fixture
def rollout(
    world: LocalWorld, api_client: client.ApiClient, namespace: str, operator: OperatorProcess
) -> Iterator[Rollout]:
    r = Rollout(world, api_client, namespace)
    try:
        yield r
    finally:
        r.close()
