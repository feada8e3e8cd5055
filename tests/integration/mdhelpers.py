"""pytest fixtures for ModelDeployment integration tests, over the one helper module that every
suite and the demo share (`hack/localworld/rollouts.py`): the storage, the CRD, the operator.

The fixtures here are imported by the test modules that use them (the shared conftest belongs to
the cluster harness).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import ExistingCluster
from devcluster.cluster import wait_for as wait_until
from localworld.rollouts import ModelDeployments, OperatorProcess, install_crd, revision
from modelship.kube.storage import KubeError, Storage, md_path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
Operator = OperatorProcess

__all__ = ["EXAMPLES", "KubeError", "Operator", "md_path", "revision", "wait_until"]


@pytest.fixture(scope="session")
def kube(api_client: client.ApiClient) -> Storage:
    return Storage(api_client)


@pytest.fixture(scope="session")
def crd_installed(kube: Storage) -> None:
    """The CRD, exactly as generated from the models, applied and Established."""
    install_crd(kube)


def operator_in(
    cluster: ExistingCluster, namespace: str, log_path: Path, args: list[str] | None = None
) -> OperatorProcess:
    """The operator as a process, watching `namespace` only (not started)."""
    return OperatorProcess(cluster.env, log_path, namespaces=[namespace], args=list(args or []))


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def create_md(kube: Storage, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    return ModelDeployments(kube, namespace).create(manifest)


def md_status(kube: Storage, namespace: str, name: str) -> dict[str, Any]:
    return ModelDeployments(kube, namespace).status(name)


def deploy_stable(kube: Storage, namespace: str, manifest: dict[str, Any]) -> str:
    """Create `manifest` and wait until its revision is the stable one and Healthy; return it."""
    return ModelDeployments(kube, namespace).deploy_stable(manifest)


def refusal(kube: Storage, namespace: str, manifest: dict[str, Any]) -> str:
    """Create `manifest`; return the API server's refusal message (fails if it was admitted)."""
    try:
        create_md(kube, namespace, manifest)
    except KubeError as err:
        assert err.status in (400, 422), err
        return str(err.body.get("message", err.body) if isinstance(err.body, dict) else err.body)
    raise AssertionError(f"admitted: {json.dumps(manifest)[:300]}")


@pytest.fixture
def operator(
    cluster: ExistingCluster, namespace: str, crd_installed: None, tmp_path: Path
) -> Iterator[OperatorProcess]:
    op = operator_in(cluster, namespace, tmp_path / "operator.log").start()
    try:
        yield op
    finally:
        op.stop()
        # Shown by pytest only when the test failed: what the cluster looked like at the end.
        print(f"operator log: {op.log_path}")
        print(
            cluster.kubectl(
                "get", "modeldeployments,deployments,replicasets,pods", "-o", "wide", "-n", namespace
            )
        )
        print(cluster.kubectl("get", "events", "--sort-by=.lastTimestamp", "-n", namespace, check=False))
