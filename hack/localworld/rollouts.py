"""The operator in the local world: its CRD, `python -m modelship run` as a process, and the
ModelDeployments the e2e tests and the demo roll out with catalogue images.

The operator is the real one, started exactly as a user would start it outside a cluster; its
pods are then run by the pod runner and its HTTPRoutes served by the world's router.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.cluster import free_port, terminate, wait_for
from localworld.catalogue import Image

FIELD_MANAGER = "modelship-localworld"
GATEWAY = "local-gateway"  # the parentRef of the routes; the world's router stands in for it
PORT = 8080
APPLY = "application/apply-patch+yaml"
MERGE = "application/merge-patch+json"


def install_crd(api: client.ApiClient, timeout: float = 30) -> None:
    """Apply the ModelDeployment CRD as the operator's models generate it; wait until it is served."""
    from modelship import api as md_api
    from modelship import crd
    from modelship.kube.client import Kube

    kube = Kube(api)
    manifest = crd.generate()
    path = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{manifest['metadata']['name']}"
    kube.request(
        "PATCH",
        path,
        query={"fieldManager": FIELD_MANAGER, "force": "true"},
        body=manifest,
        content_type=APPLY,
    )

    def established() -> bool:
        conditions = (kube.get(path) or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for("the ModelDeployment CRD to be established", established, timeout=timeout)
    # Discovery can lag behind Established by a moment.
    wait_for(
        "the ModelDeployment API to be served", lambda: kube.get(f"/apis/{md_api.GROUP}/{md_api.VERSION}")
    )


@dataclass
class OperatorProcess:
    """`python -m modelship run` against the cluster `env` names (KUBECONFIG), output to a log."""

    env: Mapping[str, str]
    log_path: Path
    namespaces: list[str] = field(default_factory=list)  # none: all namespaces
    resync_seconds: float = 2.0
    args: list[str] = field(default_factory=list)  # more `modelship run` flags
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> OperatorProcess:
        args = [sys.executable, "-m", "modelship", "run", "--resync-seconds", str(self.resync_seconds)]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        # A free liveness port: two operators (parallel sessions) must not collide on the default.
        args += ["--liveness", f"http://127.0.0.1:{free_port()}/healthz", *self.args]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, env=dict(self.env), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def stop(self, timeout: float = 15) -> None:
        if self.process is not None:
            terminate(self.process, timeout)
        self.process = None

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def model_spec(image: Image, version: str, name: str) -> dict[str, Any]:
    """The spec fields that change with the image: the image and the model it carries."""
    return {"image": image.ref, "model": {"name": name, "version": version, "sha256": image.model_sha256}}


def model_deployment(
    name: str,
    image: Image,
    version: str,
    steps: list[dict[str, Any]],
    replicas: int = 2,
    analysis: dict[str, Any] | None = None,
    scale_down_delay: str = "5s",
) -> dict[str, Any]:
    """A ModelDeployment of a catalogue image behind a Gateway API route `name` (served by the router)."""
    from modelship import api as md_api

    spec: dict[str, Any] = {
        **model_spec(image, version, name),
        "replicas": replicas,
        "port": PORT,
        "strategy": {"canary": {"steps": steps, "scaleDownDelay": scale_down_delay}},
        "traffic": {"router": "gatewayAPI", "httpRoute": name, "parentRefs": [{"name": GATEWAY}]},
    }
    if analysis is not None:
        spec["analysis"] = analysis
    return {"apiVersion": md_api.API_VERSION, "kind": md_api.KIND, "metadata": {"name": name}, "spec": spec}


class ModelDeployments:
    """Create, patch and read ModelDeployments in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        from modelship.kube.client import Kube

        self.kube = Kube(api)
        self.namespace = namespace

    def path(self, name: str = "") -> str:
        from modelship import api as md_api

        base = f"/apis/{md_api.GROUP}/{md_api.VERSION}/namespaces/{self.namespace}/{md_api.PLURAL}"
        return f"{base}/{name}" if name else base

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": self.namespace}}
        return self.kube.request("POST", self.path(), query={"fieldValidation": "Strict"}, body=body)

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.kube.request("PATCH", self.path(name), body={"spec": spec}, content_type=MERGE)

    def delete(self, name: str) -> None:
        self.kube.request("DELETE", self.path(name))

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = (self.kube.get(self.path(name)) or {}).get("status") or {}
        return result

    def wait_phase(self, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        """The status once `phase` is reached for the current generation."""

        def reached() -> dict[str, Any] | None:
            obj = self.kube.get(self.path(name)) or {}
            status = obj.get("status") or {}
            current = status.get("observedGeneration", obj.get("metadata", {}).get("generation"))
            if status.get("phase") == phase and current == obj.get("metadata", {}).get("generation"):
                return dict(status)
            return None

        found: dict[str, Any] = wait_for(f"{self.namespace}/{name} to be {phase}", reached, timeout=timeout)
        return found

    def pod_revisions(self, name: str) -> dict[str, str]:
        """pod IP -> revision, for the ModelDeployment's running pods."""
        pods = self.kube.request(
            "GET",
            f"/api/v1/namespaces/{self.namespace}/pods",
            query={"labelSelector": f"modelship.io/model={name}"},
        )["items"]
        return {
            p["status"]["podIP"]: p["metadata"]["labels"]["modelship.io/revision"]
            for p in pods
            if p.get("status", {}).get("podIP")
        }
