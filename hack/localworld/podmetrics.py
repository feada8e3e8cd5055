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
FEEDBACK = "modelserver_feedback_total"  # feedback rows scored, by outcome


def pod_metric(
    pod_ip: str, name: str = REQUESTS, route: str | None = "/predict", port: int = PORT, timeout: float = 5
) -> float:
    """The sum of counter `name`'s samples (those for `route`, unless None) on one pod's /metrics."""
    with urllib.request.urlopen(f"http://{pod_ip}:{port}/metrics", timeout=timeout) as r:
        text = r.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and (route is None or sample.labels.get("route") == route)
    )


def served_by_revision(
    core: client.CoreV1Api,
    namespace: str,
    revision: str | None = None,
    metric: str = REQUESTS,
    route: str | None = "/predict",
) -> Counter[str]:
    """Predictions (or another counter of the serving pods) each revision's running pods (only
    `revision`'s, when given) have counted so far (a pod that is gone takes its count with it).
    Pods being deleted are skipped: a server shutting down may hold the request until its timeout,
    which would delay the answer."""
    counts: Counter[str] = Counter()
    selector = f"{REVISION_LABEL}={revision}" if revision else REVISION_LABEL
    listed = core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
    for pod in json.loads(listed.data)["items"]:  # type: ignore[attr-defined]
        status = pod.get("status") or {}
        deleting = pod["metadata"].get("deletionTimestamp")
        if status.get("podIP") and status.get("phase") == "Running" and not deleting:
            try:
                value = pod_metric(status["podIP"], metric, route, timeout=2)
            except OSError:
                continue  # a pod shutting down
            counts[pod["metadata"]["labels"][REVISION_LABEL]] += int(value)
    return counts
