"""The operator installed the way users install it: `helm install` of charts/modelship, its image
(built here, imported onto the real node) set by digest, running as a pod under the chart's
ServiceAccount, RBAC and securityContext in a namespace enforcing Pod Security `restricted`."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client

from devcluster.cluster import LocalCluster, wait_for
from localworld.world import pin_namespace

CHART = Path(__file__).resolve().parents[2] / "charts" / "modelship"
RELEASE = "modelship"


class InstallError(RuntimeError):
    """helm failed, or the operator pod did not become Ready; the message says which and why."""


@dataclass(frozen=True)
class Installed:
    namespace: str
    release: str
    pod: str


def helm_values(image: str, prometheus: str, watch: list[str]) -> dict[str, object]:
    """Chart values for `image` (`<repository>@sha256:<digest>`), the given Prometheus, and (when
    `watch` is given) a namespaced install that watches only those namespaces."""
    repository, _, digest = image.partition("@")
    if not digest.startswith("sha256:"):
        raise ValueError(f"the operator image must be pinned by digest, got {image!r}")
    values: dict[str, object] = {
        "image": {"repository": repository, "digest": digest, "pullPolicy": "Never"},
        "prometheus": {"address": prometheus},
        "resyncSeconds": 10,
        "logFormat": "text",
    }
    if watch:
        values |= {"namespaced": True, "watchNamespaces": watch}
    return values


def helm_install(
    cluster: LocalCluster,
    api: client.ApiClient,
    image: str,
    prometheus: str,
    namespace: str = "modelship-system",
    watch: list[str] | None = None,
    timeout: float = 120,
) -> Installed:
    """Install the chart into `namespace` (created, on the real node, `restricted`); return once the
    operator pod is Ready."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    pin_namespace(api, namespace)
    values = json.dumps(helm_values(image, prometheus, watch or []))
    done = subprocess.run(
        [str(cluster.bin_dir / "helm"), "install", RELEASE, str(CHART), "-n", namespace, "-f", "-"],
        input=values,
        env=cluster.env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise InstallError(f"helm install failed: {done.stderr.strip()}")
    selector = f"app.kubernetes.io/instance={RELEASE}"

    def ready_pod() -> str | None:
        listed = core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        for pod in json.loads(listed.data)["items"]:  # type: ignore[attr-defined]
            conditions = (pod.get("status") or {}).get("conditions") or []
            if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return str(pod["metadata"]["name"])
        return None

    try:
        pod = wait_for("the operator pod Ready", ready_pod, timeout)
    except TimeoutError as err:
        state = cluster.kubectl("get", "pods,events", "-n", namespace, "-o", "wide", check=False)
        raise InstallError(f"{err}\n{state}") from err
    return Installed(namespace, RELEASE, pod)


def operator_log(cluster: LocalCluster, installed: Installed) -> str:
    return cluster.kubectl("logs", "-n", installed.namespace, installed.pod, check=False)
