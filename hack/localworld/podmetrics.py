"""What serving pods counted themselves, read from each pod's /metrics at its pod IP (the real
node's pods are reachable from this machine). The truth about where traffic went: not a router's
bookkeeping, and no scrape interval in between."""

from __future__ import annotations

import json
import urllib.request
from collections import Counter

from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

REVISION_LABEL = "modelship.io/revision"
PORT = 8080  # the serving image's default, which the operator's pods and the tests' use
REQUESTS = "modelserver_requests_total"


def pod_metric(pod_ip: str, name: str = REQUESTS, route: str = "/predict", port: int = PORT) -> float:
    """The sum of counter `name`'s samples for `route` on one pod's own /metrics."""
    with urllib.request.urlopen(f"http://{pod_ip}:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("route") == route
    )


def served_by_revision(core: client.CoreV1Api, namespace: str) -> Counter[str]:
    """Predictions each revision's running pods have answered so far (a pod that is gone takes
    its count with it)."""
    counts: Counter[str] = Counter()
    listed = core.list_namespaced_pod(namespace, label_selector=REVISION_LABEL, _preload_content=False)
    for pod in json.loads(listed.data)["items"]:  # type: ignore[attr-defined]
        status = pod.get("status") or {}
        if status.get("podIP") and status.get("phase") == "Running":
            try:
                value = pod_metric(status["podIP"])
            except OSError:
                continue  # a pod shutting down
            counts[pod["metadata"]["labels"][REVISION_LABEL]] += int(value)
    return counts
