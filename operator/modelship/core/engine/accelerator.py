"""Accelerators (see `modelship.core.devices`): device-aware replica counts during a rollout, where
each revision runs (the devices or the CPU fallback), and the device conditions and events.
"""

from __future__ import annotations

from modelship import api
from modelship.core import devices, traffic
from modelship.core.engine.model import (
    ConditionValue,
    Context,
    Event,
    Observations,
    ObservedDeployment,
    Outcome,
    current,
    has,
)


def make_room(ctx: Context, out: Outcome, weight: int | None = None) -> tuple[Outcome, devices.Plan | None]:
    """Device-aware replicas (see `modelship.core.devices`): the canary surges while devices are free;
    otherwise stable pods make room one at a time, or (`rollout: surge`) the rollout stops.
    `weight`: the traffic share the devices plan for (default: the outcome's). Returns the outcome
    with the replicas the devices allow, and the device plan (None when nothing counts devices:
    no accelerator, CPU fallback, hostPath)."""
    spec, observations = ctx.spec, ctx.observations
    accelerator, observed = spec.accelerator, observations.devices
    if accelerator is None or observed is None or not devices.counts_resource(accelerator):
        return out, None
    assert out.canary is not None
    if placement(out.canary, accelerator, spec, observations) == "cpu":
        return out, None
    decided = devices.plan(
        accelerator,
        (out.stable_replicas, out.canary_replicas),
        _revision(ctx.observed(out.stable)),
        _revision(ctx.observed(out.canary)),
        observed,
        out.weight or 0 if weight is None else weight,
        # Blue/green never puts both colours behind one Service.
        spec.strategy.canary is not None and traffic.router_for(spec).shares_one_service,
    )
    fitted = out.but(
        stable_replicas=decided.stable, canary_replicas=decided.canary, device_blocked=decided.blocked
    )
    return fitted, decided


def _revision(observed: ObservedDeployment | None) -> devices.Revision:
    if observed is None:
        return devices.Revision(spec=0, ready=0, settled=True)
    settled = current(observed) and observed.replicas <= observed.spec_replicas
    return devices.Revision(observed.spec_replicas, observed.available_replicas, settled)


def placement(
    name: str,
    accelerator: api.Accelerator | None,
    spec: api.ModelDeploymentSpec,
    observations: Observations,
) -> devices.Placement:
    """A revision keeps the placement its Deployment was created with; a new one is decided now."""
    observed = observations.deployments.get(name)
    if observed is not None and observed.placement in ("device", "cpu"):
        return "cpu" if observed.placement == "cpu" else "device"
    if accelerator is None:
        return "device"
    return devices.placement(accelerator, spec.replicas, observations.devices)


def device_conditions(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    out: Outcome,
    on_cpu: list[str],
    observations: Observations,
) -> dict[str, ConditionValue]:
    """InsufficientAccelerator, AcceleratorFallback and HostDeviceMount, once they have applied."""
    conditions: dict[str, ConditionValue] = {}
    accelerator = spec.accelerator
    if out.device_blocked:
        conditions["InsufficientAccelerator"] = ("True", *out.device_blocked)
    elif has(status, "InsufficientAccelerator"):
        conditions["InsufficientAccelerator"] = (
            "False",
            "DevicesAvailable",
            "the rollout has the devices it needs",
        )
    if on_cpu and accelerator is not None:
        known = observations.devices.describe() if observations.devices else "capacity unknown"
        conditions["AcceleratorFallback"] = (
            "True",
            "NoFreeDevice",
            f"revision(s) {', '.join(on_cpu)} run on CPU nodes (spec.accelerator.fallback: cpu): the devices "
            f"cannot hold {spec.replicas} pod(s) x {accelerator.resource.count}; {known}",
        )
    elif has(status, "AcceleratorFallback"):
        conditions["AcceleratorFallback"] = (
            "False",
            "OnDevices",
            "every revision runs on the accelerator nodes",
        )
    if accelerator is not None and accelerator.host_path:
        path = api.HOST_DEVICE_PATHS[accelerator.interface]
        conditions["HostDeviceMount"] = (
            "True",
            "HostPathInUse",
            f"spec.accelerator.hostPath: {path} is mounted from the host into a privileged container, "
            "and the scheduler cannot count devices; install a device plugin and drop hostPath",
        )
    elif has(status, "HostDeviceMount"):
        conditions["HostDeviceMount"] = ("False", "DevicePlugin", "the device comes from a device plugin")
    return conditions


def device_events(old: api.ModelDeploymentStatus, new: list[api.Condition]) -> list[Event]:
    """A Warning each time one of the device conditions turns True."""
    before = {c.type: c.status for c in old.conditions or []}
    return [
        Event("Warning", c.type if c.type != "HostDeviceMount" else c.reason, c.message)
        for c in new
        if c.type in ("InsufficientAccelerator", "AcceleratorFallback", "HostDeviceMount")
        and c.status == "True"
        and before.get(c.type) != "True"
    ]
