"""Shared fixtures: a real Kubernetes API server for integration and e2e tests.

By default the session starts its own local control plane (hack/devcluster). When
`--kubeconfig PATH` is given, or KUBECONFIG is set, the tests run against that
cluster instead (kind, k3d, a cloud cluster). When e2e tests are collected, the local
cluster also runs the real node (containerd, kubelet, kube-proxy: hack/devcluster/realnode.py).
If the local control plane cannot be built or started, every test that needs it errors with
the reason: nothing is skipped.
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from devcluster import build
from devcluster.cluster import ExistingCluster, LocalCluster


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--kubeconfig",
        default=os.environ.get("KUBECONFIG"),
        help="run integration tests against this cluster instead of starting a local one "
        "(default: $KUBECONFIG)",
    )


@pytest.fixture(scope="session")
def cluster(request: pytest.FixtureRequest) -> Iterator[ExistingCluster]:
    kubeconfig = request.config.getoption("--kubeconfig")
    if kubeconfig:
        yield ExistingCluster(kubeconfig=Path(kubeconfig), bin_dir=build.build() / "bin")
        return
    # The e2e suites run pods for real: the cluster gets the machine's one real node then (a second
    # session beside this one would be refused it; integration tests alone leave it free).
    real_node = any(item.get_closest_marker("e2e") for item in request.session.items)
    local = LocalCluster.create(real_node=real_node)
    local.start()
    try:
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="session")
def api_client(cluster: ExistingCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


@pytest.fixture
def namespace(request: pytest.FixtureRequest, api_client: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, with its default ServiceAccount, deleted afterwards."""
    core = client.CoreV1Api(api_client)
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{stem}-{uuid.uuid4().hex[:6]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    # Pods are refused until the service-account controller has made `default`.
    deadline = time.monotonic() + 30
    while not core.list_namespaced_service_account(name, field_selector="metadata.name=default").items:
        if time.monotonic() > deadline:
            raise TimeoutError(f"namespace {name}: no default ServiceAccount after 30s")
        time.sleep(0.2)
    yield name
    core.delete_namespace(name)


# Tests that start a cluster with the machine's one real node of their own (each demo; a run that
# is killed), which the session cluster holds from the first test that needs it until the end.
OWN_REAL_NODE = (
    "tests/e2e/test_demo.py",
    "tests/integration/test_killed_run.py::test_a_sigkilled_run_with_a_real_node",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that start a real node of their own first (OWN_REAL_NODE)."""
    items.sort(key=lambda item: not item.nodeid.startswith(OWN_REAL_NODE))
