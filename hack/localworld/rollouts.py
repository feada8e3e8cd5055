"""ModelDeployments against a real API server, for every suite and the demo: the CRD, the
ModelDeployments themselves (create, patch, read, wait), and the operator as a process.

One module serves the integration tests (`tests/integration/mdhelpers.py` adds only pytest
fixtures), the e2e tests, the demo and the benchmarks. It reaches the cluster through the
operator's own storage layer (`modelship.kube.storage`): the same paths, content types and errors.

The operator is the real one, `python -m modelship run`, started exactly as a user would start it
outside a cluster.
"""

from __future__ import annotations

import json
import signal
import sys
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kubernetes import client

from devcluster import procs
from devcluster.cluster import wait_for
from devcluster.net import free_port

if TYPE_CHECKING:
    from localworld.demoimages import ModelImage as Image
    from modelship.kube.storage import Storage

FIELD_MANAGER = "modelship-localworld"
GATEWAY = "local-gateway"  # the parentRef of the routes; the world's gateway serves it
PORT = 8080


def storage_of(api: client.ApiClient | Storage) -> Storage:
    from modelship.kube.storage import Storage

    return api if isinstance(api, Storage) else Storage(api)


def install_crd(api: client.ApiClient | Storage, timeout: float = 30) -> None:
    """Apply the ModelDeployment CRD as the operator's models generate it; wait until it is served."""
    from modelship import api as md_api
    from modelship import crd
    from modelship.kube.storage import crd_path

    storage = storage_of(api)
    manifest = crd.generate()
    storage.apply(manifest, FIELD_MANAGER)
    path = crd_path(manifest["metadata"]["name"])

    def established() -> bool:
        conditions = (storage.get(path) or {}).get("status", {}).get("conditions") or []
        return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)

    wait_for("the ModelDeployment CRD to be established", established, timeout=timeout)
    # Discovery can lag behind Established by a moment.
    wait_for(
        "the ModelDeployment API to be served", lambda: storage.get(f"/apis/{md_api.GROUP}/{md_api.VERSION}")
    )


def revision(manifest: Mapping[str, Any]) -> str:
    """The revision (and Deployment) name the operator gives `manifest`'s spec."""
    from modelship import api as md_api
    from modelship.core import revisions

    spec = md_api.ModelDeploymentSpec.model_validate(manifest["spec"])
    return revisions.revision_name(manifest["metadata"]["name"], revisions.template_of(spec))


@dataclass
class OperatorProcess:
    """`python -m modelship run` against the cluster `env` names (KUBECONFIG), output to a log."""

    env: Mapping[str, str]
    log_path: Path
    namespaces: list[str] = field(default_factory=list)  # none: all namespaces
    resync_seconds: float = 2.0
    args: list[str] = field(default_factory=list)  # more `modelship run` flags
    # A free liveness port: two operators (parallel sessions) must not collide on the default.
    liveness_port: int = field(default_factory=free_port)
    child: procs.Child | None = None

    def start(self) -> OperatorProcess:
        """Start it (again, after stop: same port and log); its pid is recorded beside the log,
        which is in the cluster's state directory for the demo and benchmarks."""
        if self.child is not None and self.child.running:
            raise RuntimeError(f"the operator already runs (pid {self.child.pid})")
        args = [sys.executable, "-m", "modelship", "run", "--resync-seconds", str(self.resync_seconds)]
        for namespace in self.namespaces:
            args += ["--namespace", namespace]
        args += ["--liveness", f"http://127.0.0.1:{self.liveness_port}/healthz", *self.args]
        # Named after its log: two operators logging side by side keep records of their own.
        self.child = procs.Child(
            self.log_path.stem, args, self.log_path, self.log_path.parent, self.env
        ).start()
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        """`sig` (SIGKILL: a crash), then SIGKILL if it has not exited after `timeout` seconds."""
        if self.child is not None:
            self.child.stop(timeout, sig)

    def health(self) -> dict[str, Any] | None:
        """What the liveness endpoint answers (kopf's probes), None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2) as r:
                result: dict[str, Any] = json.loads(r.read())
                return result
        except OSError:
            return None

    def log_lines(self) -> list[dict[str, Any]]:
        """The operator's JSON log lines (a line that is not JSON as `{"unstructured": line}`)."""
        lines = []
        for raw in self.log_path.read_text().splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                lines.append({"unstructured": raw})
        return lines

    def resync_passes(self) -> int:
        return sum(1 for line in self.log_lines() if str(line.get("message", "")).startswith("resync pass"))

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
    """A ModelDeployment of a model image behind the Gateway API route `name`: the route the
    local world exposes (localworld.world.expose), or one modelship creates on `GATEWAY`."""
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

    def __init__(self, api: client.ApiClient | Storage, namespace: str) -> None:
        self.kube = storage_of(api)
        self.namespace = namespace

    def path(self, name: str = "") -> str:
        from modelship.kube.storage import md_path

        return md_path(self.namespace, name)

    def create(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        body = {**manifest, "metadata": {**manifest["metadata"], "namespace": self.namespace}}
        return self.kube.create(self.path(), body, fieldValidation="Strict")

    def patch(self, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.kube.merge(self.path(name), {"spec": spec}, FIELD_MANAGER)

    def delete(self, name: str) -> None:
        self.kube.delete(self.path(name))

    def get(self, name: str) -> dict[str, Any] | None:
        return self.kube.get(self.path(name))

    def status(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = (self.get(name) or {}).get("status") or {}
        return result

    def wait_phase(self, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        """The status once `phase` is reached for the current generation."""

        def reached() -> dict[str, Any] | None:
            obj = self.get(name) or {}
            status = obj.get("status") or {}
            current = status.get("observedGeneration", obj.get("metadata", {}).get("generation"))
            if status.get("phase") == phase and current == obj.get("metadata", {}).get("generation"):
                return dict(status)
            return None

        found: dict[str, Any] = wait_for(f"{self.namespace}/{name} to be {phase}", reached, timeout=timeout)
        return found

    def deploy_stable(self, manifest: Mapping[str, Any], timeout: float = 90) -> str:
        """Create `manifest`, wait until its revision is the stable one and Healthy; return it."""
        self.create(manifest)
        rev, name = revision(manifest), manifest["metadata"]["name"]

        def healthy() -> bool:
            current = self.status(name)
            return current.get("phase") == "Healthy" and current.get("stableRevision") == rev

        wait_for("a Healthy stable revision", healthy, timeout=timeout)
        return rev

    def pod_revisions(self, name: str) -> dict[str, str]:
        """pod IP -> revision, for the ModelDeployment's running pods."""
        from modelship.core import manifests
        from modelship.kube.storage import pods_path

        pods = self.kube.items(pods_path(self.namespace), labelSelector=f"{manifests.MODEL_LABEL}={name}")
        return {
            p["status"]["podIP"]: p["metadata"]["labels"][manifests.REVISION_LABEL]
            for p in pods
            if p.get("status", {}).get("podIP")
        }


def at(obj: Mapping[str, Any], path: str, default: Any = None) -> Any:
    """A field by its dotted path (`rollout.canary.weight`), or `default` when any part is missing."""
    node: Any = obj
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return default
        node = node[key]
    return node


def canary_weight(status: Mapping[str, Any]) -> int:
    """The traffic the rollout in progress gets: a canary's weight, 100 once a blue/green switched."""
    if at(status, "rollout.blueGreen.phase") in ("Switched", "Accepted"):
        return 100
    return int(at(status, "rollout.canary.weight", 0))


def rolling_revision(status: Mapping[str, Any]) -> str | None:
    """The revision of a canary or blue/green rollout in progress (not an aborted one)."""
    found = at(status, "rollout.canary.revision") or at(status, "rollout.blueGreen.revision")
    return str(found) if found else None


def merged(target: Any, patch: Any) -> Any:
    """`patch` applied to `target` as the API server applies a JSON merge patch (RFC 7386)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out
