"""Device placement, capacity arithmetic and the replace-mode rule (modelship.core.devices), and the
engine driving a canary through devices that cannot hold both revisions at once."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from modelship import api
from modelship.core import devices, engine, manifests, revisions
from modelship.core.analysis.verdicts import RawMeasurement

from .enginesim import OWNER, World, command, spec

pytestmark = pytest.mark.unit

RES = "squat.ai/coral"


def acc(**fields: Any) -> api.Accelerator:
    return api.Accelerator.model_validate({"type": "coral", **fields})


def node(name: str, labels: dict[str, str], units: int | None) -> dict[str, Any]:
    allocatable = {"cpu": "8"} | ({RES: str(units)} if units is not None else {})
    return {"metadata": {"name": name, "labels": labels}, "status": {"allocatable": allocatable}}


def pod(
    node_name: str | None,
    units: int,
    *,
    phase: str = "Running",
    namespace: str = "ml",
    labels: dict[str, str] | None = None,
    terminating: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p", "namespace": namespace, "labels": labels or {}}
    if terminating:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node_name, "containers": [{"resources": {"limits": {RES: str(units)}}}]},
        "status": {"phase": phase},
    }


CORAL = {api.CORAL_LABEL: api.CORAL_LABEL_VALUE}


# ---- where the device is ------------------------------------------------------------------


def test_default_nodes_are_the_modelship_label() -> None:
    assert devices.node_terms(acc()) == [{"modelship.io/accelerator": "coral"}]


def test_nfd_usb_preset_matches_the_coral_before_or_after_its_firmware_loads() -> None:
    terms = devices.node_terms(acc(nodeSelection={"preset": "nfd"}))
    assert terms == [
        {"feature.node.kubernetes.io/usb-fe_1a6e_089a.present": "true"},
        {"feature.node.kubernetes.io/usb-ff_18d1_9302.present": "true"},
    ]
    assert devices.matches({"feature.node.kubernetes.io/usb-ff_18d1_9302.present": "true"}, terms)
    assert not devices.matches(CORAL, terms)


def test_nfd_pcie_preset_is_class_0880_vendor_1ac1() -> None:
    terms = devices.node_terms(acc(interface="pcie", nodeSelection={"preset": "nfd"}))
    assert terms == [{"feature.node.kubernetes.io/pci-0880_1ac1.present": "true"}]


def test_match_labels_replace_the_preset_and_all_must_match() -> None:
    terms = devices.node_terms(acc(nodeSelection={"matchLabels": {"a": "1", "b": "2"}}))
    assert terms == [{"a": "1", "b": "2"}]
    assert devices.matches({"a": "1", "b": "2", "c": "3"}, terms)
    assert not devices.matches({"a": "1"}, terms)


def test_default_toleration_is_the_default_taint_and_an_empty_list_tolerates_nothing() -> None:
    assert devices.tolerations(acc()) == [
        {"key": "modelship.io/accelerator", "operator": "Equal", "value": "coral", "effect": "NoSchedule"}
    ]
    assert devices.tolerations(acc(tolerations=[])) == []


# ---- how many are free --------------------------------------------------------------------


def test_capacity_is_allocatable_minus_requests_of_unfinished_pods_on_matching_nodes() -> None:
    nodes = [node("c0", CORAL, 2), node("c1", CORAL, 1), node("cpu", {}, None), node("other", {}, 4)]
    mine = {manifests.MODEL_LABEL: "fraud"}
    pods = [
        pod("c0", 1, labels=mine),  # this model's
        pod("c0", 1, namespace="elsewhere", labels=mine),  # same labels, another namespace
        pod("c1", 1, terminating=True),  # still holds its unit
        pod("c1", 1, phase="Succeeded"),  # finished: holds nothing
        pod("other", 3),  # not a matching node
        pod(None, 1),  # not bound yet
    ]
    cap = devices.capacity(nodes, pods, [CORAL], RES, ("ml", mine))
    assert (cap.nodes, cap.allocatable, cap.requested, cap.model, cap.terminating) == (2, 3, 3, 1, 1)
    assert cap.free == 0
    assert cap.describe() == f"0 of 3 {RES} free on 2 matching node(s) (3 requested)"


def test_pod_units_counts_requests_or_limits_and_the_largest_init_container() -> None:
    p = {
        "spec": {
            "containers": [{"resources": {"requests": {RES: "1"}}}, {"resources": {"limits": {RES: "1"}}}],
            "initContainers": [{"resources": {"limits": {RES: "3"}}}],
        }
    }
    assert devices.pod_units(p, RES) == 3
    assert devices.pod_units({"spec": {"containers": [{"resources": {"limits": {RES: "x"}}}]}}, RES) == 0


def test_fallback_cpu_places_a_revision_on_cpu_only_when_the_devices_cannot_hold_it() -> None:
    full = devices.Capacity(RES, 1, 1, 1)
    assert devices.placement(acc(fallback="cpu"), 1, full) == "cpu"
    assert devices.placement(acc(), 1, full) == "device"  # no fallback: wait for the device
    assert devices.placement(acc(fallback="cpu"), 1, None) == "device"  # unknown: try the device
    # The model's own pods hold the devices: a new revision can take them over.
    assert devices.placement(acc(fallback="cpu"), 2, devices.Capacity(RES, 2, 2, 2, model=2)) == "device"


# ---- surge or replace ---------------------------------------------------------------------

SETTLED = devices.Revision(spec=2, ready=2, settled=True)
NONE = devices.Revision(spec=0, ready=0, settled=True)


def test_surge_when_the_devices_have_room() -> None:
    plan = devices.plan(acc(), (2, 1), SETTLED, NONE, devices.Capacity(RES, 3, 3, 2), 0, True)
    assert (plan.stable, plan.canary, plan.mode, plan.blocked) == (2, 1, "surge", None)


def test_surge_only_stops_with_the_numbers() -> None:
    plan = devices.plan(acc(rollout="surge"), (2, 1), SETTLED, NONE, devices.Capacity(RES, 2, 2, 2), 0, True)
    assert (plan.stable, plan.canary) == (2, 0)
    assert plan.blocked == (
        "SurgeCapacity",
        f"spec.accelerator.rollout is surge: the canary needs 1 more {RES} (1 pod(s) x 1), "
        f"0 of 2 {RES} free on 2 matching node(s) (2 requested)",
    )


def test_replace_frees_a_device_first_then_uses_it() -> None:
    full, one_free = devices.Capacity(RES, 2, 2, 2), devices.Capacity(RES, 2, 2, 1)
    first = devices.plan(acc(), (2, 1), SETTLED, NONE, full, 0, True)
    assert (first.stable, first.canary, first.mode) == (1, 0, "replace")
    going = devices.plan(acc(), (2, 1), devices.Revision(1, 1, False), NONE, full, 0, True)
    assert (going.stable, going.canary) == (1, 0)  # the pod is still going: wait
    terminating = devices.Capacity(RES, 2, 2, 2, terminating=1)
    held = devices.plan(acc(), (2, 1), devices.Revision(1, 1, True), NONE, terminating, 0, True)
    assert (held.stable, held.canary) == (1, 0)
    then = devices.plan(acc(), (2, 1), devices.Revision(1, 1, True), NONE, one_free, 0, True)
    assert (then.stable, then.canary) == (1, 1)


def test_replace_waits_for_the_canary_pod_to_be_ready_before_the_next_one() -> None:
    full = devices.Capacity(RES, 2, 2, 2)
    plan = devices.plan(
        acc(), (1, 2), devices.Revision(1, 1, True), devices.Revision(1, 0, True), full, 50, True
    )
    assert (plan.stable, plan.canary) == (1, 1)


def test_replace_never_goes_below_min_available_nor_zero() -> None:
    full = devices.Capacity(RES, 1, 1, 1)
    one = devices.Revision(1, 1, True)
    plan = devices.plan(acc(), (1, 1), one, NONE, full, 0, True)
    assert (plan.stable, plan.canary) == (1, 0)
    assert plan.blocked is not None and plan.blocked[0] == "MinAvailable"
    assert "minAvailable=1" in plan.blocked[1]
    three = devices.plan(acc(minAvailable=2), (2, 1), SETTLED, NONE, devices.Capacity(RES, 2, 2, 2), 0, True)
    assert three.blocked is not None and (three.stable, three.canary) == (2, 0)


@pytest.mark.parametrize(
    ("stable", "canary", "weight", "shared", "left"),
    [
        (2, 0, 0, True, 1),
        (1, 1, 0, True, 0),  # the canary carries no traffic yet
        (1, 1, 50, True, 1),  # one Service over both: the canary pod serves too
        (1, 1, 50, False, 0),  # exact weights: stable's half would have no pod
        (1, 2, 100, False, 2),
    ],
)
def test_serving_after_removal(stable: int, canary: int, weight: int, shared: bool, left: int) -> None:
    assert devices.serving_after_removal(stable, canary, weight, shared) == left


# ---- the engine through a whole rollout on two devices ----------------------------------------


@dataclasses.dataclass
class DeviceWorld(World):
    """Two devices; a pod holds one from scheduling until it is gone; none is ever shared."""

    units: int = 2

    def held(self) -> int:
        return sum(d.replicas for d in self.deployments.values())

    def observations(self, s: api.ModelDeploymentSpec | None = None) -> engine.Observations:
        observed = super().observations(s)
        return dataclasses.replace(observed, devices=devices.Capacity(RES, 2, self.units, self.held()))

    def settle(self) -> None:
        # Pods go first (their devices free up), then new pods start where a device is free.
        for name, d in self.deployments.items():
            if d.replicas > d.spec_replicas:
                self.deployments[name] = dataclasses.replace(d, replicas=d.spec_replicas)
        for name, d in self.deployments.items():
            n = min(d.spec_replicas, d.replicas + self.units - self.held())
            self.deployments[name] = dataclasses.replace(
                d,
                observed_generation=d.generation,
                replicas=n,
                updated_replicas=n,
                available_replicas=n,
                minimum_available=n > 0,
            )

    def serving(self) -> int:
        status = self.status
        ready = {n: d.available_replicas for n, d in self.deployments.items()}
        stable = ready.get(status.stable_revision or "", 0)
        # The rollout's pods serve once it has weight (a canary's, or a blue/green after its switch).
        rollout = status.canary or status.blue_green
        if status.canary is not None:
            weighted = status.canary.weight > 0
        else:
            weighted = status.blue_green is not None and status.blue_green.phase in ("Switched", "Accepted")
        canary = ready.get(rollout.revision, 0) if rollout is not None and weighted else 0
        return stable + canary


def test_a_canary_on_full_devices_completes_by_replacement_never_serving_from_zero_pods() -> None:
    coral = {"type": "coral"}
    s = spec(accelerator=coral, strategy={"canary": {"steps": [{"setWeight": 50}, {"pause": {}}]}})
    world = DeviceWorld()
    for _ in range(4):
        world.reconcile(s)
        world.settle()
    assert world.status.phase == "Healthy" and world.held() == 2
    stable = world.status.stable_revision
    new = spec(accelerator=coral, strategy=s.strategy, image="registry.example/fraud@sha256:" + "c" * 64)
    serving, modes = [], set()
    for _ in range(40):
        decision = world.reconcile(new)
        world.settle()
        serving.append(world.serving())
        assert world.held() <= 2
        if world.status.phase == "Paused" and world.status.canary and world.status.canary.step == 1:
            _, world.status = command("promote", new, world.status)  # step 2, the pause's start cleared
        if world.status.stable_revision != stable and world.status.phase == "Healthy":
            break
        modes |= {c.reason for c in decision.status.conditions or [] if c.type == "InsufficientAccelerator"}
    target = revisions.revision_name(OWNER.name, revisions.template_of(new))
    assert world.status.stable_revision == target, world.status
    assert world.deployments[target].available_replicas == 2
    assert min(serving) >= 1, serving
    assert not modes  # replace mode is not an error


def test_surge_only_rollout_reports_insufficient_accelerator_and_a_warning() -> None:
    coral = {"type": "coral", "rollout": "surge"}
    s = spec(accelerator=coral)
    world = DeviceWorld()
    for _ in range(4):
        world.reconcile(s)
        world.settle()
    new = spec(accelerator=coral, image="registry.example/fraud@sha256:" + "c" * 64)
    for _ in range(3):
        decision = world.reconcile(new)
        world.settle()
    condition = next(c for c in decision.status.conditions or [] if c.type == "InsufficientAccelerator")
    assert (condition.status, condition.reason) == ("True", "SurgeCapacity")
    assert "0 of 2" in condition.message
    assert any(e.type == "Warning" and e.reason == "InsufficientAccelerator" for e in world.events)
    assert (
        world.status.canary is not None
        and world.status.canary.weight == 0
        and world.deployments[world.status.canary.revision].spec_replicas == 0
    )


# ---- blue/green on devices ------------------------------------------------------------------

NEW = "registry.example/fraud@sha256:" + "c" * 64
BAD_ERRORS = RawMeasurement(0.3, requests=1000)


def blue_green(
    image: str | None = None, accelerator: dict[str, Any] | None = None, **bg: Any
) -> api.ModelDeploymentSpec:
    fields: dict[str, Any] = {
        "accelerator": accelerator or {"type": "coral", "rollout": "auto"},
        "strategy": {"blueGreen": {"autoPromote": True, "abortScaleDownDelay": "0s", **bg}},
        "analysis": {
            "interval": "5s",
            "count": 2,
            "metrics": [{"name": "errors", "template": "error-rate", "max": 0.05}],
        },
    }
    return spec(**fields, **({"image": image} if image else {}))


def healthy_device_world(s: api.ModelDeploymentSpec) -> DeviceWorld:
    world = DeviceWorld()
    for _ in range(4):
        world.reconcile(s)
        world.settle()
    assert world.status.phase == "Healthy" and world.held() == 2
    return world


def active(decision: engine.Decision) -> str:
    """The revision `<name>` selects, as rendered."""
    service = next(m for m in decision.apply if m["kind"] == "Service" and m["metadata"]["name"] == "fraud")
    return str(service["spec"]["selector"][manifests.REVISION_LABEL])


def serving(world: DeviceWorld, decision: engine.Decision) -> int:
    observed = world.deployments.get(active(decision))
    return observed.available_replicas if observed else 0


def test_blue_green_replace_mode_switches_with_the_pods_it_could_get_then_takes_the_rest() -> None:
    world = healthy_device_world(blue_green())
    old = world.status.stable_revision
    new = blue_green(NEW)
    target = revisions.revision_name(OWNER.name, revisions.template_of(new))
    lowest, switched_with, blocked = 2, None, set()
    for _ in range(40):
        decision = world.reconcile(new)
        lowest = min(lowest, serving(world, decision))  # before the pods move
        world.settle()
        lowest = min(lowest, serving(world, decision))
        assert world.held() <= 2
        if active(decision) == target and switched_with is None:
            switched_with = world.deployments[target].available_replicas
            assert world.deployments[old or ""].available_replicas == 1  # minAvailable kept until then
        blocked |= {c.reason for c in decision.status.conditions or [] if c.type == "InsufficientAccelerator"}
        if world.status.stable_revision == target and world.status.phase == "Healthy":
            break
    assert world.status.stable_revision == target, world.status
    assert world.deployments[target].available_replicas == 2 and world.held() == 2
    assert switched_with == 1  # the preview could hold one pod before the switch
    assert lowest >= 1
    assert not blocked  # replace mode is the plan, not an error


def test_blue_green_replace_mode_keeps_the_old_colour_until_post_promotion_passes_and_switches_back() -> None:
    world = healthy_device_world(blue_green(postPromotionAnalysis=True))
    old = world.status.stable_revision or ""
    new = blue_green(NEW, postPromotionAnalysis=True)
    target = revisions.revision_name(OWNER.name, revisions.template_of(new))
    for _ in range(20):
        decision = world.reconcile(new)
        world.settle()
        if active(decision) == target:
            break
    assert world.status.blue_green is not None and world.status.blue_green.phase == "Switched"
    world.metrics["errors"] = BAD_ERRORS
    for _ in range(10):
        decision = world.reconcile(new)
        world.settle()
        assert world.deployments[old].available_replicas >= 1  # something to switch back to
        if world.status.aborted:
            break
    assert world.status.aborted is not None
    assert world.status.aborted.revision == target and active(decision) == old
    assert serving(world, decision) >= 1
    assert condition_reason(decision, "Progressing") == "AnalysisFailed"


def test_blue_green_replace_mode_without_room_for_min_available_never_switches_and_says_why() -> None:
    coral = {"type": "coral", "rollout": "auto", "minAvailable": 2}
    world = healthy_device_world(blue_green(accelerator=coral))
    old = world.status.stable_revision
    new = blue_green(NEW, accelerator=coral)
    for _ in range(6):
        decision = world.reconcile(new)
        world.settle()
        assert active(decision) == old and serving(world, decision) == 2
    found = next(c for c in decision.status.conditions or [] if c.type == "InsufficientAccelerator")
    assert (found.status, found.reason) == ("True", "MinAvailable")
    assert "before the switch the new colour can hold only 0 pod(s)" in found.message
    assert "minAvailable=2" in found.message


def test_blue_green_surge_on_full_devices_stops_with_the_numbers() -> None:
    coral = {"type": "coral", "rollout": "surge"}
    world = healthy_device_world(blue_green(accelerator=coral))
    new = blue_green(NEW, accelerator=coral)
    for _ in range(3):
        decision = world.reconcile(new)
        world.settle()
    found = next(c for c in decision.status.conditions or [] if c.type == "InsufficientAccelerator")
    assert (found.status, found.reason) == ("True", "SurgeCapacity")
    assert world.deployments[world.status.stable_revision or ""].available_replicas == 2


def condition_reason(decision: engine.Decision, type_: str) -> str:
    return next(c.reason for c in decision.status.conditions or [] if c.type == type_)


def test_fallback_cpu_renders_cpu_placement_and_says_so() -> None:
    s = spec(accelerator={"type": "coral", "fallback": "cpu"})
    world = DeviceWorld(units=0)
    decision = world.reconcile(s)
    d = next(m for m in decision.apply if m["kind"] == "Deployment")
    pod = d["spec"]["template"]
    assert pod["metadata"]["annotations"] == {devices.PLACEMENT_ANNOTATION: "cpu"}
    assert "affinity" not in pod["spec"] and "tolerations" not in pod["spec"]
    assert RES not in pod["spec"]["containers"][0]["resources"].get("limits", {})
    condition = next(c for c in decision.status.conditions or [] if c.type == "AcceleratorFallback")
    assert (condition.status, condition.reason) == ("True", "NoFreeDevice")
    # The revision keeps its placement once created, even when devices free up.
    world.units = 2
    world.deployments = {n: dataclasses.replace(o, placement="cpu") for n, o in world.deployments.items()}
    again = world.reconcile(s)
    d = next(m for m in again.apply if m["kind"] == "Deployment")
    assert d["spec"]["template"]["metadata"]["annotations"][devices.PLACEMENT_ANNOTATION] == "cpu"


def test_host_path_is_a_warning_condition_and_event() -> None:
    world = World()
    decision = world.reconcile(spec(accelerator={"type": "coral", "hostPath": True}))
    condition = next(c for c in decision.status.conditions or [] if c.type == "HostDeviceMount")
    assert (condition.status, condition.reason) == ("True", "HostPathInUse")
    assert any(e.type == "Warning" and e.reason == "HostPathInUse" for e in decision.events)
    assert not any(
        e.reason == "HostPathInUse"
        for e in world.reconcile(spec(accelerator={"type": "coral", "hostPath": True})).events
    )


# ---- what the pods look like ----------------------------------------------------------------


def render(placement: devices.Placement = "device", **fields: Any) -> dict[str, Any]:
    s = spec(accelerator={"type": "coral", **fields})
    d = manifests.deployment(OWNER, "fraud-0123456789", revisions.template_of(s), 1, placement=placement)
    result: dict[str, Any] = d["spec"]["template"]["spec"]
    return result


def test_device_pods_require_the_device_nodes_tolerate_the_taint_and_request_the_resource() -> None:
    pod = render()
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert terms == {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "modelship.io/accelerator", "operator": "In", "values": ["coral"]}]}
        ]
    }
    assert pod["tolerations"] == devices.tolerations(acc())
    container = pod["containers"][0]
    assert container["resources"]["limits"] == {RES: "1"}
    assert {"name": "ACCELERATOR", "value": "coral"} in container["env"]
    assert all("hostPath" not in v for v in pod["volumes"])
    assert container["securityContext"]["allowPrivilegeEscalation"] is False


@pytest.mark.parametrize(
    ("interface", "path", "kind"),
    [("usb", "/dev/bus/usb", "Directory"), ("pcie", "/dev/apex_0", "CharDevice")],
)
def test_host_path_opt_in_mounts_the_device_in_a_privileged_non_root_container(
    interface: str, path: str, kind: str
) -> None:
    pod = render(hostPath=True, interface=interface)
    assert {"name": "edgetpu", "hostPath": {"path": path, "type": kind}} in pod["volumes"]
    container = pod["containers"][0]
    assert {"name": "edgetpu", "mountPath": path} in container["volumeMounts"]
    assert container["securityContext"]["privileged"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert RES not in container["resources"].get("limits", {})  # no device plugin publishes it


def test_rollout_settings_are_not_part_of_the_revision() -> None:
    a = spec(accelerator={"type": "coral"})
    b = spec(accelerator={"type": "coral", "rollout": "surge", "minAvailable": 2})
    c = spec(accelerator={"type": "coral", "fallback": "cpu"})
    name = revisions.revision_name
    assert name("m", revisions.template_of(a)) == name("m", revisions.template_of(b))
    assert name("m", revisions.template_of(a)) != name("m", revisions.template_of(c))


def test_the_local_clusters_coral_nodes_use_the_operators_defaults() -> None:
    from devcluster import nodes

    made = nodes.coral_node(0).manifest()
    assert devices.matches(made["metadata"]["labels"], devices.node_terms(acc()))
    assert made["spec"]["taints"][0]["key"] == devices.tolerations(acc())[0]["key"]
    assert made["status"]["allocatable"][api.CORAL_RESOURCE] == "1"
