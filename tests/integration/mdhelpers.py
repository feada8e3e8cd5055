"""Helpers for ModelDeployment integration tests: the CRD, REST access, the operator process.

The fixtures here are imported by the test modules that use them (the shared
conftest belongs to the cluster harness).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import ExistingCluster, free_port
from devcluster.cluster import wait_for as wait_until
from modelship import api, crd
from modelship.core import revisions
from modelship.kube.client import Kube, KubeError

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"


@pytest.fixture(scope="session")
def kube(api_client: client.ApiClient) -> Kube:
    return Kube(api_client)


@pytest.fixture(scope="session")
def crd_installed(kube: Kube) -> None:
    """The CRD, exactly as generated from the models, applied and Established."""
    manifest = crd.generate()
    name = manifest["metadata"]["name"]
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"
    kube.request(
        "PATCH",
        path,
        query={"fieldManager": "modelship-tests", "force": "true"},
        body=manifest,
        content_type="application/apply-patch+yaml",
    )

    def established() -> bool:
        obj = kube.get(path) or {}
        conditions = obj.get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_until("the ModelDeployment CRD to be established", established, timeout=30)
    # Discovery can lag behind Established by a moment.
    wait_until("the ModelDeployment API to be served", lambda: kube.get(f"/apis/{api.GROUP}/{api.VERSION}"))


def example(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((EXAMPLES / name).read_text())
    return doc


def md_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}"
    return f"{base}/{name}" if name else base


def create_md(kube: Kube, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    return kube.request("POST", md_path(namespace), query={"fieldValidation": "Strict"}, body=body)


def revision(manifest: dict[str, Any]) -> str:
    """The revision (and Deployment) name the operator gives `manifest`'s spec."""
    spec = api.ModelDeploymentSpec.model_validate(manifest["spec"])
    return revisions.revision_name(manifest["metadata"]["name"], revisions.template_of(spec))


def md_status(kube: Kube, namespace: str, name: str) -> dict[str, Any]:
    result: dict[str, Any] = (kube.get(md_path(namespace, name)) or {}).get("status") or {}
    return result


def deploy_stable(kube: Kube, namespace: str, manifest: dict[str, Any]) -> str:
    """Create `manifest` and wait until its revision is the stable one and Healthy; return it."""
    create_md(kube, namespace, manifest)
    rev, name = revision(manifest), manifest["metadata"]["name"]

    def healthy() -> bool:
        current = md_status(kube, namespace, name)
        return current.get("phase") == "Healthy" and current.get("stableRevision") == rev

    wait_until("a Healthy stable revision", healthy, timeout=90)
    return rev


def refusal(kube: Kube, namespace: str, manifest: dict[str, Any]) -> str:
    """Create `manifest`; return the API server's refusal message (fails if it was admitted)."""
    try:
        create_md(kube, namespace, manifest)
    except KubeError as err:
        assert err.status in (400, 422), err
        return str(err.body.get("message", err.body) if isinstance(err.body, dict) else err.body)
    raise AssertionError(f"admitted: {json.dumps(manifest)[:300]}")


@dataclass
class Operator:
    """`python -m modelship run` as a real subprocess, scoped to one namespace."""

    cluster: ExistingCluster
    namespace: str
    log_path: Path
    resync_seconds: float = 2.0
    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)  # e.g. --metrics-port, --peering
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> Operator:
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelship",
                "run",
                "--namespace",
                self.namespace,
                "--liveness",
                f"http://127.0.0.1:{self.port}/healthz",
                "--resync-seconds",
                str(self.resync_seconds),
                *self.extra_args,
            ],
            env=self.cluster.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                result: dict[str, Any] = json.loads(r.read())
                return result
        except OSError:
            return None

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"unstructured": raw})
        return lines

    def resync_passes(self) -> int:
        passes = [line for line in self.log_lines() if str(line.get("message", "")).startswith("resync pass")]
        return len(passes)


@pytest.fixture
def operator(
    cluster: ExistingCluster, namespace: str, crd_installed: None, tmp_path: Path
) -> Iterator[Operator]:
    op = Operator(cluster, namespace, tmp_path / "operator.log").start()
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
