"""Helpers for the local world's e2e tests: serving Deployments and waiting (`eventually`)."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from devcluster.cluster import wait_for
from localworld.catalogue import Catalogue

eventually = wait_for  # polls until truthy, naming what it waited for


def serving_deployment(
    name: str,
    catalogue: Catalogue,
    replicas: int,
    sha256: str | None = None,
    model: str | None = None,
    revision: str | None = None,
    image_name: str = "sklearn",
) -> dict[str, Any]:
    """A Deployment of a catalogue image (the sample one by default), labelled like the operator's pods."""
    image = catalogue.by_name(image_name)
    labels = {
        "app": name,
        "modelship.io/model": model or name,
        "modelship.io/revision": revision or f"{name}-r1",
    }
    container = {
        "name": "modelserver",
        "image": image.ref,
        "ports": [{"name": "http", "containerPort": 8080}],
        "env": [
            {"name": "MODEL_SHA256", "value": sha256 or image.model_sha256},
            {"name": "MODEL_NAME", "value": model or name},
            {"name": "MODEL_VERSION", "value": "1"},
        ],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}},
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
            "selector": {"modelship.io/revision": revision},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }
