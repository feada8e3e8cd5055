"""Accelerator devices, pure: where a revision may run, how many devices are free, and how a
rollout makes room for canary pods when they are not.

- `node_terms`: the nodes that hold the device, as node-affinity terms (ORed; the labels of
  one term ANDed): the `modelship` preset, the Node Feature Discovery preset, or the user's
  own `matchLabels`.
- `capacity`: from the matching Nodes and the pods bound to them (plain API objects), the
  units of the device-plugin resource that are allocatable, requested, and free.
- `placement`: whether a new revision goes on the devices or, with `fallback: cpu`, on CPU
  nodes because the devices cannot hold it.
- `plan`: the replica counts of one rollout pass. When the devices have room the canary
  surges beside stable; when they do not, `auto` replaces: one stable pod goes first, the
  canary pod comes up on the device it freed, one at a time, never fewer ready pods serving
  than `minAvailable` (and never zero); `surge` stops and says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from modelship import api

PLACEMENT_ANNOTATION = "modelship.io/placement"
Placement = Literal["device", "cpu"]


def node_terms(accelerator: api.Accelerator) -> list[dict[str, str]]:
    """Label sets a device node must carry: any one term, all labels of it."""
    selection = accelerator.node_selection or api.NodeSelection()
    if selection.match_labels:
        return [dict(selection.match_labels)]
    if selection.preset == "nfd":
        labels = api.NFD_USB_LABELS if accelerator.interface == "usb" else api.NFD_PCIE_LABELS
        return [{label: "true"} for label in labels]
    return [{api.CORAL_LABEL: api.CORAL_LABEL_VALUE}]


def tolerations(accelerator: api.Accelerator) -> list[dict[str, Any]]:
    if accelerator.tolerations is not None:
        return [api.dump(t) for t in accelerator.tolerations]
    return [
        {
            "key": api.CORAL_TAINT_KEY,
            "operator": "Equal",
            "value": api.CORAL_LABEL_VALUE,
            "effect": "NoSchedule",
        }
    ]


def counts_resource(accelerator: api.Accelerator) -> bool:
    """The device is a schedulable resource (a device plugin); with hostPath nothing counts it."""
    return not accelerator.host_path


def matches(labels: Mapping[str, str], terms: Iterable[Mapping[str, str]]) -> bool:
    return any(all(labels.get(k) == v for k, v in term.items()) for term in terms)


@dataclass(frozen=True)
class Capacity:
    """Units of one resource on the matching nodes."""

    resource: str
    nodes: int
    allocatable: int
    requested: int  # by every pod bound there that has not finished, terminating ones included
    model: int = 0  # of that, by this model's own pods
    terminating: int = 0  # of that, by pods on their way out (their units free up soon)

    @property
    def free(self) -> int:
        return max(self.allocatable - self.requested, 0)

    def describe(self) -> str:
        return (
            f"{self.free} of {self.allocatable} {self.resource} free on {self.nodes} matching node(s) "
            f"({self.requested} requested)"
        )


def _units(value: Any) -> int:
    # Extended resources are whole numbers; anything else counts as none rather than crash a pass.
    try:
        return int(str(value))
    except ValueError:
        return 0


def pod_units(pod: Mapping[str, Any], resource: str) -> int:
    """Units a pod holds: its containers' requests (which default to limits for extended
    resources), or its largest init container's, whichever is more, as the scheduler counts."""
    spec = pod.get("spec", {})

    def of(container: Mapping[str, Any]) -> int:
        res = container.get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        return _units(requests.get(resource, limits.get(resource, 0)))

    main = sum(of(c) for c in spec.get("containers") or [])
    init = max((of(c) for c in spec.get("initContainers") or []), default=0)
    return max(main, init)


def capacity(
    nodes: Iterable[Mapping[str, Any]],
    pods: Iterable[Mapping[str, Any]],
    terms: list[dict[str, str]],
    resource: str,
    model: tuple[str, Mapping[str, str]] | None = None,
) -> Capacity:
    """`nodes`/`pods` as the API returns them; pods that finished (Succeeded/Failed) hold nothing.
    `model` (namespace, labels) picks out this model's own pods."""
    matching = {n["metadata"]["name"]: n for n in nodes if matches(n["metadata"].get("labels") or {}, terms)}
    allocatable = sum(
        _units((n.get("status") or {}).get("allocatable", {}).get(resource, 0)) for n in matching.values()
    )
    requested = own = terminating = 0
    for pod in pods:
        if (pod.get("spec") or {}).get("nodeName") not in matching:
            continue
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            continue
        units = pod_units(pod, resource)
        requested += units
        meta = pod["metadata"]
        if model and meta.get("namespace") == model[0] and matches(meta.get("labels") or {}, [model[1]]):
            own += units
        if pod["metadata"].get("deletionTimestamp"):
            terminating += units
    return Capacity(resource, len(matching), allocatable, requested, own, terminating)


def placement(accelerator: api.Accelerator, pods: int, observed: Capacity | None) -> Placement:
    """Where a new revision of `pods` pods goes. With `fallback: cpu`, on CPU nodes when the
    devices cannot hold it, counting the devices this model's own pods hold (a rollout can
    free those by replacing pods); devices when capacity is unknown."""
    if accelerator.fallback != "cpu" or observed is None:
        return "device"
    need = pods * accelerator.resource.count
    return "device" if observed.free + observed.model >= need else "cpu"


@dataclass(frozen=True)
class Revision:
    """One revision Deployment as a rollout pass sees it."""

    spec: int  # replicas asked for
    ready: int
    settled: bool  # its status describes that spec, and no extra pods are still going


@dataclass(frozen=True)
class Plan:
    stable: int
    canary: int
    mode: Literal["surge", "replace"]
    blocked: tuple[str, str] | None = None  # (reason, message) of InsufficientAccelerator


def plan(
    accelerator: api.Accelerator,
    wanted: tuple[int, int],
    stable: Revision,
    canary: Revision,
    observed: Capacity,
    weight: int,
    shared_service: bool,
) -> Plan:
    """(stable, canary) replicas for this pass, given the (stable, canary) the router wants."""
    want_stable, want_canary = wanted
    unit = accelerator.resource.count
    grow_stable = max(want_stable - stable.spec, 0)
    grow_canary = max(want_canary - canary.spec, 0)
    if (grow_stable + grow_canary) * unit <= observed.free:
        return Plan(want_stable, want_canary, "surge")
    # No room for everything: stable never grows beyond what it has, and the canary waits.
    keep_stable = min(want_stable, stable.spec)
    if grow_canary == 0:
        return Plan(keep_stable, want_canary, "surge")
    need = f"the canary needs {grow_canary * unit} more {observed.resource} ({grow_canary} pod(s) x {unit})"
    if accelerator.rollout == "surge":
        message = f"spec.accelerator.rollout is surge: {need}, {observed.describe()}"
        return Plan(keep_stable, canary.spec, "surge", ("SurgeCapacity", message))
    if not (stable.settled and canary.settled) or canary.ready < canary.spec or observed.terminating:
        return Plan(keep_stable, canary.spec, "replace")  # the last move is still under way
    if observed.free >= unit:
        return Plan(keep_stable, canary.spec + 1, "replace")
    floor = max(accelerator.min_available or 1, 1)
    if serving_after_removal(stable.ready, canary.ready, weight, shared_service) >= floor and stable.spec > 0:
        return Plan(min(keep_stable, stable.spec - 1), canary.spec, "replace")
    message = (
        f"{need}, {observed.describe()}; replacing a stable pod would leave fewer than "
        f"spec.accelerator.minAvailable={floor} ready pods serving"
    )
    return Plan(keep_stable, canary.spec, "replace", ("MinAvailable", message))


def serving_after_removal(stable_ready: int, canary_ready: int, weight: int, shared_service: bool) -> int:
    """Ready pods left to serve if one stable pod goes. One Service over both revisions spreads
    requests over every ready pod; with exact weights each revision that carries traffic must
    keep pods of its own, so stable counts alone until the canary takes 100%."""
    if shared_service:
        return stable_ready - 1 + (canary_ready if weight > 0 else 0)
    return canary_ready if weight >= 100 else stable_ready - 1
