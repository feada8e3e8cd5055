"""The fake nodes of the local cluster: KWOK keeps them Ready; the real scheduler places pods on them."""

from __future__ import annotations

import fcntl
import random
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from modelship import api

KWOK_ANNOTATION = "kwok.x-k8s.io/node"

# How the local cluster advertises a Coral Edge TPU node: a label to select it, a
# NoSchedule taint so only workloads that ask for the device land there, and the
# extended resource a device plugin (generic-device-plugin's name) would publish. The
# operator's defaults are the one source of truth: the fake nodes look like what it expects.
CORAL_LABEL = api.CORAL_LABEL
CORAL_LABEL_VALUE = api.CORAL_LABEL_VALUE
CORAL_TAINT_KEY = api.CORAL_TAINT_KEY
CORAL_RESOURCE = api.CORAL_RESOURCE


@dataclass(frozen=True)
class FakeNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    extended: dict[str, str] = field(default_factory=dict)
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"
    # KWOK hands out pod IPs from the node's podCIDR. It is not in 127.0.0.0/8: the API
    # server refuses loopback addresses in EndpointSlices (docs/local-world.md), so the
    # local world maps each pod IP onto loopback instead (localworld.addresses).
    pod_cidr: str | None = None

    def manifest(self) -> dict[str, Any]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": self.pods, **self.extended}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": self.name,
                "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "kubernetes.io/hostname": self.name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    "type": "kwok",
                    **self.labels,
                },
            },
            "spec": {
                "taints": list(self.taints),
                **({"podCIDR": self.pod_cidr, "podCIDRs": [self.pod_cidr]} if self.pod_cidr else {}),
            },
            # Capacity is set at creation (later changes go through the /status subresource).
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
            },
        }


def pod_cidr(network: int, index: int) -> str:
    """The /24 of the `index`th node in the cluster's pod network 10.<network>.0.0/16."""
    return f"10.{network}.{index}.0/24"


# A second octet per cluster, away from the service range 10.96.0.0/16. Pods of the local world
# listen on 127.<network>.x.y, so two clusters on one machine (a demo beside a test session)
# must never share one: each claims its network with an exclusive lock on a file, which the
# kernel drops when the process ends, however it ends.
POD_NETWORKS = range(128, 255)
CLAIMS_DIR = Path(tempfile.gettempdir()) / "modelship-pod-networks"
_claims: dict[int, TextIO] = {}


def claim_pod_network(candidates: Iterable[int] | None = None) -> int:
    """A pod network no other cluster on this machine holds, held until released or exit."""
    CLAIMS_DIR.mkdir(exist_ok=True)
    pool = list(POD_NETWORKS if candidates is None else candidates)
    random.shuffle(pool)
    for network in pool:
        if network in _claims:
            continue
        handle = (CLAIMS_DIR / f"{network}.lock").open("a")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claims[network] = handle
        return network
    raise RuntimeError(f"every local pod network is held by another cluster (locks in {CLAIMS_DIR})")


def release_pod_network(network: int) -> None:
    handle = _claims.pop(network, None)
    if handle is not None:
        handle.close()


def network_of(node: FakeNode) -> int | None:
    return int(node.pod_cidr.split(".")[1]) if node.pod_cidr else None


def cpu_node(index: int, network: int | None = None) -> FakeNode:
    return FakeNode(name=f"kwok-cpu-{index}", pod_cidr=None if network is None else pod_cidr(network, index))


def coral_node(index: int, units: int = 1, network: int | None = None) -> FakeNode:
    return FakeNode(
        name=f"kwok-coral-{index}",
        pod_cidr=None if network is None else pod_cidr(network, 100 + index),
        labels={CORAL_LABEL: CORAL_LABEL_VALUE},
        taints=({"key": CORAL_TAINT_KEY, "value": CORAL_LABEL_VALUE, "effect": "NoSchedule"},),
        extended={CORAL_RESOURCE: str(units)},
    )


def default_nodes(cpu: int = 3, coral: int = 1, network: int | None = None) -> list[FakeNode]:
    """CPU nodes get pod CIDRs 10.<network>.<i>.0/24, Coral nodes 10.<network>.<100+i>.0/24."""
    net = claim_pod_network() if network is None else network
    return [cpu_node(i, net) for i in range(cpu)] + [coral_node(i, network=net) for i in range(coral)]
