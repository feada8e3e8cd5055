"""Prometheus discovers the serving pods on the real node through the API server and labels them
by revision."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from kubernetes import client

from localworld.prometheus import Prometheus
from localworld.world import LocalWorld

from .helpers import PORT, eventually, is_ready, pods, serving_deployment

pytestmark = pytest.mark.e2e


def test_serving_pods_metrics_reach_prometheus_with_revision_and_model_labels(
    api_client: client.ApiClient, namespace: str, world: LocalWorld, prometheus: Prometheus
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("risk", world.image("v1"), replicas=3))
    eventually(
        "3 Ready pods", lambda: sum(is_ready(p) for p in pods(core, namespace, "risk")) == 3, timeout=90
    )
    ready_at = time.monotonic()
    body = json.dumps({"instances": [[10.5, 6.1, 0.2, -1.3]]}).encode()
    for pod in pods(core, namespace, "risk"):
        for _ in range(3):  # the pod IPs, on the node's bridge, are reachable from this machine
            url = f"http://{pod.status.pod_ip}:{PORT}/predict"
            with urllib.request.urlopen(url, data=body, timeout=5) as r:
                assert r.status == 200

    selector = f'namespace="{namespace}", revision="risk-r1", model="risk"'

    def scraped() -> bool:
        up = prometheus.query(f"up{{{selector}}} == 1")
        done = prometheus.query(f'modelserver_requests_total{{{selector}, route="/predict", code="200"}}')
        return len(up) == 3 and len(done) == 3 and all(float(s["value"][1]) == 3 for s in done)

    # A few scrape intervals (2 s) after the pods are Ready and answered.
    eventually("3 scraped pods with 3 requests each in Prometheus", scraped, timeout=20)
    assert time.monotonic() - ready_at < 20
    series = prometheus.query(f"modelserver_model_info{{{selector}}}")
    names = {p.metadata.name for p in pods(core, namespace, "risk")}
    assert {s["metric"]["pod"] for s in series} == names
    assert {s["metric"]["instance"].split(":")[0] for s in series} == {
        p.status.pod_ip for p in pods(core, namespace, "risk")
    }
