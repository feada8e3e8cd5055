"""The local world for e2e tests: the cluster with its real node (root conftest) plus what runs
around it.

`world` is session-scoped: the model images on the node, one Prometheus and Traefik as the
Gateway API data plane for the whole run, stopped after the last test. Every e2e namespace sends
its pods to the real node and enforces Pod Security `restricted`. `operator` runs the real
operator (CRD installed) on the test's namespace as a process on this machine; `rollout` applies
ModelDeployments of model images there, each behind an HTTPRoute of its own on the world's
Gateway, with background load through Traefik, all stopped after the test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster, LocalCluster
from loadgen import Load
from loadgen.mix import holdout_samples
from localworld.podmetrics import served_by_revision
from localworld.prometheus import Prometheus
from localworld.rollouts import ModelDeployments, OperatorProcess, install_crd, model_deployment, model_spec
from localworld.world import Endpoint, LocalWorld, pin_namespace

SCRAPE_INTERVAL = "2s"


@pytest.fixture(scope="session")
def local_cluster(cluster: ExistingCluster) -> LocalCluster:
    if not isinstance(cluster, LocalCluster) or cluster.node is None:
        raise RuntimeError(
            "the e2e tests need the local control plane with its real node (unset KUBECONFIG); "
            "the root conftest starts one when e2e tests are collected"
        )
    return cluster


@pytest.fixture(scope="session")
def world(local_cluster: LocalCluster, api_client: client.ApiClient) -> Iterator[LocalWorld]:
    # Fails (PrometheusMissing, with the install command) when Prometheus is absent.
    state = local_cluster.state_dir / "localworld"
    with LocalWorld(local_cluster, api_client, state, scrape_interval=SCRAPE_INTERVAL) as w:
        yield w


@pytest.fixture
def namespace(namespace: str, api_client: client.ApiClient) -> str:
    """The root fixture's namespace, its pods on the real node under Pod Security `restricted`."""
    pin_namespace(api_client, namespace)
    return namespace


@pytest.fixture(scope="session")
def prometheus(world: LocalWorld) -> Prometheus:
    return world.prometheus


@pytest.fixture(scope="session")
def crd_installed(world: LocalWorld, api_client: client.ApiClient) -> None:
    install_crd(api_client)


@pytest.fixture
def operator(
    local_cluster: LocalCluster, world: LocalWorld, namespace: str, crd_installed: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """The real operator (`python -m modelship run`) on this machine, watching the test's namespace;
    analysis queries the world's Prometheus, and pod IPs are reachable from here (the smoke test)."""
    args = ["--prometheus-address", world.prometheus.url]
    op = OperatorProcess(
        local_cluster.env, tmp_path / "operator.log", namespaces=[namespace], args=args
    ).start()
    try:
        yield op
    finally:
        op.stop()
    # Shown by pytest only when the test failed.
    print(f"operator log: {op.log_path}")
    print(
        local_cluster.kubectl(
            "get", "modeldeployments,deployments,pods,httproutes", "-o", "wide", "-n", namespace, check=False
        )
    )


class Rollout:
    """ModelDeployments of model images in one namespace, each behind its own route, with load."""

    def __init__(self, world: LocalWorld, api_client: client.ApiClient, namespace: str) -> None:
        self.world, self.namespace = world, namespace
        self.core = client.CoreV1Api(api_client)
        self.mds = ModelDeployments(api_client, namespace)
        self.loads: list[Load] = []
        self.endpoints: dict[str, Endpoint] = {}

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Expose the ModelDeployment's route (before the operator could make one), then create it."""
        name = manifest["metadata"]["name"]
        self.endpoints[name] = self.world.expose(self.namespace, name)
        return self.mds.create(manifest)

    def apply(self, name: str, image: str, steps: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:
        """Create ModelDeployment `name` on model image `image` (its name is the model version)."""
        return self.create(model_deployment(name, self.world.image(image), image, steps, **kwargs))

    def set_image(self, name: str, image: str) -> None:
        self.mds.patch(name, model_spec(self.world.image(image), image, name))

    def endpoint(self, name: str) -> Endpoint:
        return self.endpoints[name]

    def errors_report(self, *lines: str) -> str:
        """`lines` (a load's summary, say), then Traefik's 5xx on this namespace's routes, one per
        line: an assertion message as a string, which pytest prints whole (a tuple's repr it cuts
        at 240 characters, and a gateway error's time is at the end)."""
        heading = "Traefik's 5xx (UTC time, status, origin, router, service):"
        return "\n".join([*lines, heading, *self.world.gateway_errors(self.namespace)])

    def expose_service(self, service: str) -> Endpoint:
        """A route of its own to one Service (a preview, say), as a prober's entry point."""
        return self.world.expose(self.namespace, service, backends={service: 100})

    def load(self, endpoint: Endpoint, rate: float, duration: float, feedback_ratio: float = 0.5) -> Load:
        """Background load of the demo holdout rows through Traefik, with feedback."""
        load = Load(
            f"{endpoint.url}/predict",
            holdout_samples(),
            rate,
            duration,
            feedback_ratio=feedback_ratio,
            host=endpoint.host,
        )
        self.loads.append(load.start())
        return load

    def served(self) -> Counter[str]:
        """Predictions answered so far per revision, from the pods' own metrics."""
        return served_by_revision(self.core, self.namespace)

    def close(self) -> None:
        for load in self.loads:
            load.stop()


@pytest.fixture
def rollout(
    world: LocalWorld, api_client: client.ApiClient, namespace: str, operator: OperatorProcess
) -> Iterator[Rollout]:
    r = Rollout(world, api_client, namespace)
    try:
        yield r
    finally:
        r.close()
