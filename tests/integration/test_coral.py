"""Coral Edge TPU workloads against the real API server and scheduler (issue #8).

Each test adds its own KWOK nodes with a device resource named for the test alone, so the
shared cluster's other nodes and tests never hold or take its devices; the real scheduler
places the pods, the real operator (a subprocess) decides the rollout.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from devcluster.nodes import FakeNode
from localworld.rollouts import at
from modelship import api
from modelship.kube.storage import MERGE, Storage

from .mdhelpers import (
    Operator,
    crd_installed,
    create_md,
    deploy_stable,
    example,
    kube,
    md_path,
    md_status,
    operator,
    revision,
    wait_until,
)

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

NAME = "edge-classifier"
IMAGES = {c: "registry.example/modelship/edge-classifier@sha256:" + c * 64 for c in "ab"}
DEFAULT_TAINT = {"key": api.CORAL_TAINT_KEY, "value": api.CORAL_LABEL_VALUE, "effect": "NoSchedule"}
NFD_BOOT, NFD_RUNTIME = api.NFD_USB_LABELS

AddNodes = Callable[..., list[str]]


@pytest.fixture
def resource() -> str:
    """A device resource only this test's nodes publish."""
    return f"test.modelship.io/coral-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def add_nodes(kube: Storage, resource: str) -> Iterator[AddNodes]:
    """Create fake Coral nodes (1 unit of `resource` each); deleted after the test."""
    made: list[str] = []

    def add(count: int, labels: list[dict[str, str]] | None = None) -> list[str]:
        names = []
        for i in range(count):
            name = f"kwok-coraltest-{uuid.uuid4().hex[:6]}"
            node = FakeNode(
                name=name,
                labels=(labels or [{api.CORAL_LABEL: api.CORAL_LABEL_VALUE}] * count)[i],
                taints=(DEFAULT_TAINT,),
                extended={resource: "1"},
            ).manifest()
            kube.request("POST", "/api/v1/nodes", body=node)
            made.append(name)
            # Extended resources change only through /status; set them there too.
            kube.request(
                "PATCH", f"/api/v1/nodes/{name}/status", body={"status": node["status"]}, content_type=MERGE
            )
            names.append(name)
        for name in names:
            wait_until(f"node {name} Ready", lambda n=name: _node_ready(kube, n), timeout=60)
        return names

    yield add
    for name in made:
        kube.delete(f"/api/v1/nodes/{name}")


def _node_ready(kube: Storage, name: str) -> bool:
    node = kube.get(f"/api/v1/nodes/{name}") or {}
    conditions = node.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def manifest(
    resource: str, image: str = IMAGES["a"], replicas: int = 2, **accelerator: Any
) -> dict[str, Any]:
    doc = copy.deepcopy(example("coral.yaml"))
    doc["spec"].update(
        {
            "image": image,
            "replicas": replicas,
            "strategy": {
                "canary": {
                    "steps": [{"setWeight": 50}, {"pause": {"duration": "1s"}}],
                    "scaleDownDelay": "1s",
                }
            },
        }
    )
    doc["spec"]["accelerator"] = {"type": "coral", "resource": {"name": resource, "count": 1}, **accelerator}
    return doc


def status(kube: Storage, namespace: str) -> dict[str, Any]:
    return md_status(kube, namespace, NAME)


def condition(kube: Storage, namespace: str, type_: str) -> dict[str, Any] | None:
    return next((c for c in status(kube, namespace).get("conditions") or [] if c["type"] == type_), None)


def pods(kube: Storage, namespace: str, rev: str | None = None) -> list[dict[str, Any]]:
    selector = f"modelship.io/revision={rev}" if rev else f"modelship.io/model={NAME}"
    items: list[dict[str, Any]] = kube.request(
        "GET", f"/api/v1/namespaces/{namespace}/pods", query={"labelSelector": selector}
    )["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def deploy_healthy(kube: Storage, namespace: str, doc: dict[str, Any]) -> str:
    rev = deploy_stable(kube, namespace, doc)
    wait_until(
        "all pods ready", lambda: sum(map(ready, pods(kube, namespace, rev))) == doc["spec"]["replicas"]
    )
    return rev


def test_coral_pods_land_only_on_coral_nodes_tolerating_the_taint_and_requesting_the_device(
    kube: Storage, namespace: str, operator: Operator, add_nodes: AddNodes, resource: str
) -> None:
    coral = set(add_nodes(2))
    rev = deploy_healthy(kube, namespace, manifest(resource))
    placed = pods(kube, namespace, rev)
    assert {p["spec"]["nodeName"] for p in placed} == coral  # the real scheduler's choice, one per device
    for pod in placed:
        assert {**DEFAULT_TAINT, "operator": "Equal"} in pod["spec"]["tolerations"]
        container = pod["spec"]["containers"][0]
        assert container["resources"]["limits"][resource] == "1"
        assert {"name": "ACCELERATOR", "value": "coral"} in container["env"]
        assert not any("hostPath" in v for v in pod["spec"]["volumes"])  # never without the opt-in
    assert condition(kube, namespace, "HostDeviceMount") is None


def test_a_canary_on_two_full_devices_completes_by_replacement_never_at_zero_ready_pods(
    kube: Storage, namespace: str, operator: Operator, add_nodes: AddNodes, resource: str
) -> None:
    coral = set(add_nodes(2))
    stable = deploy_healthy(kube, namespace, manifest(resource))
    canary = revision(manifest(resource, IMAGES["b"]))
    kube.request("PATCH", md_path(namespace, NAME), body={"spec": {"image": IMAGES["b"]}}, content_type=MERGE)

    lowest, samples = 2, 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lowest = min(lowest, sum(map(ready, pods(kube, namespace))))
        samples += 1
        current = status(kube, namespace)
        if current.get("stableRevision") == canary and current.get("phase") == "Healthy":
            break
        time.sleep(0.2)
    assert status(kube, namespace).get("stableRevision") == canary, status(kube, namespace)
    assert lowest >= 1 and samples > 5, (lowest, samples)
    wait_until("no pods of the old revision", lambda: not pods(kube, namespace, stable), timeout=60)
    final = pods(kube, namespace, canary)
    assert {p["spec"]["nodeName"] for p in final} == coral and all(map(ready, final))
    insufficient = condition(kube, namespace, "InsufficientAccelerator")
    assert insufficient is None or insufficient["status"] == "False"


def serving(kube: Storage, namespace: str) -> int:
    """Ready pods of the revision the `<name>` Service selects: what users reach."""
    service = kube.get(f"/api/v1/namespaces/{namespace}/services/{NAME}") or {}
    revision = (service.get("spec", {}).get("selector") or {}).get("modelship.io/revision")
    return sum(map(ready, pods(kube, namespace, revision))) if revision else 0


def test_blue_green_in_replace_mode_switches_early_then_takes_the_old_colours_devices(
    kube: Storage, namespace: str, operator: Operator, add_nodes: AddNodes, resource: str
) -> None:
    coral = set(add_nodes(2))
    doc = manifest(resource, rollout="auto")
    doc["spec"]["strategy"] = {"blueGreen": {"autoPromote": True, "scaleDownDelay": "1s"}}
    stable = deploy_healthy(kube, namespace, doc)
    new = copy.deepcopy(doc)
    new["spec"]["image"] = IMAGES["b"]
    target = revision(new)
    kube.request("PATCH", md_path(namespace, NAME), body={"spec": {"image": IMAGES["b"]}}, content_type=MERGE)

    lowest, samples, early = 2, 0, False
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        lowest = min(lowest, serving(kube, namespace))
        samples += 1
        current = status(kube, namespace)
        if current.get("stableRevision") == target and current.get("phase") == "Healthy":
            break
        # Switched while the new colour held one device and the old colour the other.
        early = early or (
            at(current, "rollout.blueGreen.phase") in ("Switched", "Accepted")
            and sum(map(ready, pods(kube, namespace, target))) == 1
        )
        time.sleep(0.2)
    assert status(kube, namespace).get("stableRevision") == target, status(kube, namespace)
    assert lowest >= 1 and samples > 5, (lowest, samples)
    assert early
    wait_until("no pods of the old colour", lambda: not pods(kube, namespace, stable), timeout=60)
    final = pods(kube, namespace, target)
    assert {p["spec"]["nodeName"] for p in final} == coral and all(map(ready, final))


def test_surge_only_stops_with_insufficient_accelerator_and_the_numbers(
    kube: Storage, namespace: str, operator: Operator, add_nodes: AddNodes, resource: str
) -> None:
    add_nodes(2)
    stable = deploy_healthy(kube, namespace, manifest(resource, rollout="surge"))
    kube.request("PATCH", md_path(namespace, NAME), body={"spec": {"image": IMAGES["b"]}}, content_type=MERGE)
    found = wait_until(
        "InsufficientAccelerator",
        lambda: (c := condition(kube, namespace, "InsufficientAccelerator")) and c["status"] == "True" and c,
        timeout=60,
    )
    assert found["reason"] == "SurgeCapacity"
    assert f"needs 1 more {resource}" in found["message"]
    assert f"0 of 2 {resource} free on" in found["message"]  # other matching nodes lack the resource
    time.sleep(3)  # it stays stopped: stable keeps both devices, the canary has none
    assert len(pods(kube, namespace, stable)) == 2
    assert at(status(kube, namespace), "rollout.canary.weight", 0) == 0


def test_nfd_preset_selects_nodes_labelled_the_nfd_way(
    kube: Storage, namespace: str, operator: Operator, add_nodes: AddNodes, resource: str
) -> None:
    # One stick before its firmware loaded (1a6e:089a), one after (18d1:9302); no modelship label.
    nfd = set(add_nodes(2, [{NFD_BOOT: "true"}, {NFD_RUNTIME: "true"}]))
    rev = deploy_healthy(kube, namespace, manifest(resource, nodeSelection={"preset": "nfd"}))
    assert {p["spec"]["nodeName"] for p in pods(kube, namespace, rev)} == nfd


def test_fallback_cpu_runs_on_cpu_nodes_when_no_device_is_free_and_says_so(
    kube: Storage, namespace: str, operator: Operator, add_nodes: AddNodes, resource: str
) -> None:
    (node,) = add_nodes(1)
    blocker = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "holds-the-device", "namespace": namespace},
        "spec": {
            "nodeName": node,
            "tolerations": [{**DEFAULT_TAINT, "operator": "Equal"}],
            "containers": [{"name": "c", "image": "x.example/c:1", "resources": {"limits": {resource: "1"}}}],
        },
    }
    kube.request("POST", f"/api/v1/namespaces/{namespace}/pods", body=blocker)
    rev = deploy_healthy(kube, namespace, manifest(resource, replicas=1, fallback="cpu"))
    (pod,) = pods(kube, namespace, rev)
    host = kube.get(f"/api/v1/nodes/{pod['spec']['nodeName']}") or {}
    assert api.CORAL_LABEL not in host["metadata"]["labels"] and not host["spec"].get("taints")
    assert resource not in pod["spec"]["containers"][0]["resources"].get("limits", {})
    fallback = condition(kube, namespace, "AcceleratorFallback")
    assert fallback is not None and (fallback["status"], fallback["reason"]) == ("True", "NoFreeDevice")
    assert rev in fallback["message"] and f"0 of 1 {resource} free" in fallback["message"]


def test_host_path_opt_in_renders_the_documented_pod_spec_and_warns(
    kube: Storage, namespace: str, operator: Operator, resource: str
) -> None:
    doc = manifest(resource, replicas=1, hostPath=True)
    create_md(kube, namespace, doc)
    path = f"/apis/apps/v1/namespaces/{namespace}/deployments/{revision(doc)}"
    deployment = wait_until("the revision Deployment", lambda: kube.get(path), timeout=60)
    pod = deployment["spec"]["template"]["spec"]
    assert {"name": "edgetpu", "hostPath": {"path": "/dev/bus/usb", "type": "Directory"}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "edgetpu", "mountPath": "/dev/bus/usb"} in container["volumeMounts"]
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert resource not in container["resources"].get("limits", {})
    mount = wait_until("HostDeviceMount", lambda: condition(kube, namespace, "HostDeviceMount"), timeout=30)
    assert (mount["status"], mount["reason"]) == ("True", "HostPathInUse")

    def warned() -> bool:
        items = kube.request(
            "GET",
            f"/api/v1/namespaces/{namespace}/events",
            query={"fieldSelector": f"involvedObject.name={NAME}"},
        )["items"]
        return any(e["type"] == "Warning" and e["reason"] == "HostPathInUse" for e in items)

    wait_until("a HostPathInUse warning Event", warned, timeout=30)
