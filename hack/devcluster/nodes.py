"""The fake nodes of the local cluster: KWOK keeps them Ready; the real scheduler places pods on them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KWOK_ANNOTATION = "kwok.x-k8s.io/node"

# How the local cluster advertises a Coral Edge TPU node: a label to select it, a
# NoSchedule taint so only workloads that ask for the device land there, and the
# extended resource a device plugin (generic-device-plugin's name) would publish.
CORAL_LABEL = "modelship.io/accelerator"
CORAL_LABEL_VALUE = "coral"
CORAL_TAINT_KEY = "modelship.io/accelerator"
CORAL_RESOURCE = "squat.ai/coral"


@dataclass(frozen=True)
class FakeNode:
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()
    extended: dict[str, str] = field(default_factory=dict)
    cpu: str = "8"
    memory: str = "32Gi"
    pods: str = "110"

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
            "spec": {"taints": list(self.taints)},
            # Capacity is set at creation (later changes go through the /status subresource).
            "status": {
                "capacity": capacity,
                "allocatable": dict(capacity),
            },
        }


def cpu_node(index: int) -> FakeNode:
    return FakeNode(name=f"kwok-cpu-{index}")


def coral_node(index: int, units: int = 1) -> FakeNode:
    return FakeNode(
        name=f"kwok-coral-{index}",
        labels={CORAL_LABEL: CORAL_LABEL_VALUE},
        taints=({"key": CORAL_TAINT_KEY, "value": CORAL_LABEL_VALUE, "effect": "NoSchedule"},),
        extended={CORAL_RESOURCE: str(units)},
    )


def default_nodes(cpu: int = 3, coral: int = 1) -> list[FakeNode]:
    return [cpu_node(i) for i in range(cpu)] + [coral_node(i) for i in range(coral)]
