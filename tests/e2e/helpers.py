"""Helpers for the local world's e2e tests: serving Deployments on the real node, and waiting
(`eventually`, `until_served`)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from devcluster.cluster import wait_for
from localworld.demoimages import ModelImage
from localworld.podmetrics import PORT, REVISION_LABEL
from localworld.world import Endpoint, LocalWorld

eventually = wait_for  # polls until truthy, naming what it waited for


def until_served(endpoint: Endpoint, timeout: float = 30) -> None:
    """Wait until a model answers through the gateway on `endpoint` (a 503 meanwhile: it has not
    loaded the route's endpoints yet; a first deploy is Healthy once its Service's EndpointSlices
    list a ready pod, and the gateway loads them a moment later: its own watch, then a reload)."""
    eventually(f"the gateway to serve {endpoint.host}", endpoint.answers, timeout=timeout)


# What Pod Security `restricted` asks of every container (the e2e namespaces enforce it).
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def serving_deployment(
    name: str, image: ModelImage, replicas: int, model: str | None = None, revision: str | None = None
) -> dict[str, Any]:
    """A Deployment of a model image, labelled like the operator's pods, fit for `restricted`."""
    labels = {"app": name, "modelship.io/model": model or name, REVISION_LABEL: revision or f"{name}-r1"}
    container = {
        "name": "modelserver",
        "image": image.ref,
        "ports": [{"name": "http", "containerPort": PORT}],
        "env": [
            {"name": "MODEL_SHA256", "value": image.model_sha256},
            {"name": "MODEL_NAME", "value": model or name},
            {"name": "MODEL_VERSION", "value": "1"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
        "securityContext": RESTRICTED,
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}]},
            },
        },
    }


def pods(core: client.CoreV1Api, namespace: str, app: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"app={app}").items)


def is_ready(pod: client.V1Pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def service(name: str, revision: str) -> dict[str, Any]:
    """A Service over one revision's pods, port 80 -> the container port `http`."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {REVISION_LABEL: revision},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


def deploy_revision(
    api_client: client.ApiClient,
    namespace: str,
    world: LocalWorld,
    service_name: str,
    version: str,
    replicas: int,
) -> str:
    """Model image `version` as revision `<model>-<version>` (model "risk") of `replicas` Ready pods,
    behind Service `service_name`. Returns the revision."""
    revision = f"risk-{version}"
    deployment = serving_deployment(
        service_name, world.image(version), replicas, model="risk", revision=revision
    )
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, deployment)
    core = client.CoreV1Api(api_client)
    core.create_namespaced_service(namespace, service(service_name, revision))
    eventually(
        f"{replicas} Ready pods of {service_name}",
        lambda: sum(is_ready(p) for p in pods(core, namespace, service_name)) == replicas,
        timeout=90,
    )
    return revision


def expose_routed(world: LocalWorld, namespace: str, name: str, backends: dict[str, int]) -> Endpoint:
    """An HTTPRoute to `backends` (Service -> weight), once Traefik routes it."""
    endpoint = world.expose(namespace, name, backends=backends)

    eventually("Traefik to route the new HTTPRoute", endpoint.answers, timeout=30)
    return endpoint
