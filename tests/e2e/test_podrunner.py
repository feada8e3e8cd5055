"""The pod runner: real modelserver processes for pods of locally known images."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from kubernetes import client

from localworld.addresses import loopback
from localworld.catalogue import Catalogue
from localworld.podrunner import PodRunner

from .helpers import eventually, is_ready, pods, serving_deployment

pytestmark = pytest.mark.e2e


def test_deployment_pods_run_real_modelservers_on_their_pod_ips(
    api_client: client.ApiClient, namespace: str, catalogue: Catalogue, pod_runner: PodRunner
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("risk", catalogue, replicas=3))
    eventually(
        "3 Ready pods",
        lambda: len([p for p in pods(core, namespace, "risk") if is_ready(p)]) == 3,
        timeout=90,
    )
    ready = pods(core, namespace, "risk")
    assert len({p.status.pod_ip for p in ready}) == 3
    for pod in ready:
        run = pod_runner.process_of(namespace, pod.metadata.name)
        assert run is not None and run.process.poll() is None
        assert run.address == loopback(pod.status.pod_ip)
        body = json.dumps({"instances": [[10.5, 6.1, 0.2, -1.3]]}).encode()
        with urllib.request.urlopen(f"http://{run.address}:8080/predict", data=body, timeout=5) as r:
            answer = json.load(r)
        assert answer["model"] == {"name": "risk", "version": "1"}
        assert len(answer["predictions"]) == 1
    eventually(
        "deployment available 3/3",
        lambda: (
            apps.read_namespaced_deployment(name="risk", namespace=namespace).status.available_replicas == 3
        ),
    )


def test_a_process_failing_its_checksum_never_becomes_ready(
    api_client: client.ApiClient, namespace: str, catalogue: Catalogue, pod_runner: PodRunner
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(
        namespace, serving_deployment("bad", catalogue, replicas=1, sha256="0" * 64)
    )

    def exited() -> bool:
        found = pods(core, namespace, "bad")
        statuses = found[0].status.container_statuses if found else None
        return bool(statuses and statuses[0].state.terminated)

    eventually("the container reported terminated", exited, timeout=90)
    (pod,) = pods(core, namespace, "bad")
    assert pod.status.container_statuses[0].state.terminated.exit_code == 3  # checksum mismatch
    # Well past KWOK's own pod-ready delay (1 s + up to 5 s jitter): still not Ready.
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        assert not is_ready(core.read_namespaced_pod(pod.metadata.name, namespace))
        time.sleep(0.5)


def test_deleting_a_pod_stops_its_process(
    api_client: client.ApiClient, namespace: str, catalogue: Catalogue, pod_runner: PodRunner
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("gone", catalogue, replicas=1))
    eventually("a Ready pod", lambda: any(is_ready(p) for p in pods(core, namespace, "gone")), timeout=90)
    (pod,) = pods(core, namespace, "gone")
    run = pod_runner.process_of(namespace, pod.metadata.name)
    assert run is not None
    core.delete_namespaced_pod(pod.metadata.name, namespace)
    eventually("the process ended", lambda: run.process.poll() is not None, timeout=30)
    assert pod_runner.process_of(namespace, pod.metadata.name) is None


def test_scaling_up_starts_new_processes_and_down_stops_them(
    api_client: client.ApiClient, namespace: str, catalogue: Catalogue, pod_runner: PodRunner
) -> None:
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    apps.create_namespaced_deployment(namespace, serving_deployment("scale", catalogue, replicas=1))
    eventually(
        "1 Ready pod", lambda: sum(is_ready(p) for p in pods(core, namespace, "scale")) == 1, timeout=90
    )
    (first,) = pods(core, namespace, "scale")

    apps.patch_namespaced_deployment_scale("scale", namespace, {"spec": {"replicas": 2}})
    eventually(
        "2 Ready pods", lambda: sum(is_ready(p) for p in pods(core, namespace, "scale")) == 2, timeout=90
    )
    runs = [pod_runner.process_of(namespace, p.metadata.name) for p in pods(core, namespace, "scale")]
    assert all(r is not None and r.process.poll() is None for r in runs)
    assert len({r.process.pid for r in runs if r is not None}) == 2

    apps.patch_namespaced_deployment_scale("scale", namespace, {"spec": {"replicas": 0}})
    eventually(
        "no processes left",
        lambda: all(r is not None and r.process.poll() is not None for r in runs),
        timeout=60,
    )
    assert pod_runner.process_of(namespace, first.metadata.name) is None
