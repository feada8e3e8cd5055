"""The rollout state machine, pure: `decide(spec, status, observations, now) -> Decision`.

No I/O, no clock, no randomness: the shell observes the cluster, calls `decide`, and
applies the Decision (server-side apply of `apply`, deletion of `delete`, the status,
the events). Every rule lives here; `modelship.traffic` turns weights into replicas.

- No stable revision yet: deploy the spec's revision. Pending (its Deployment is not
  observed yet) -> Progressing -> Healthy once all its replicas are available; it then
  becomes `stableRevision` and its template is persisted in `status.stableTemplate`
  (so it can be re-created even after the spec moves on). If the spec changes before
  that, the unproven revision is simply replaced: it never served as stable.
- A stable revision and the spec asks for it: keep its Deployment at `spec.replicas`,
  restore it and the Services if they drift or disappear. Healthy when all replicas
  are available; Progressing while pods come up; Degraded when its Deployment is
  missing or has exceeded `spec.progressDeadline`, as Kubernetes itself reports it.
- The spec asks for another revision (canary strategy): it becomes `canaryRevision`
  and walks `spec.strategy.canary.steps` from `currentStep` (see `_walk`). After the
  last step the whole canary comes up, then it is promoted: the pointers move
  (`stableRevision`, `stableTemplate`), no pod restarts, and the old revision keeps
  running until `scaleDownAt` (`scaleDownDelay` later) before it is deleted.
- A new digest mid-rollout replaces the canary (its traffic returns to stable at
  once) and starts again from step 0; the image reverted to the stable one is an
  immediate rollback (phase RolledBack). A canary whose Deployment exceeds its
  progress deadline is aborted (reason ProgressDeadlineExceeded), as is one named by
  `status.abortedRevision` (`modelship abort`): stable takes all traffic, the canary
  is scaled to 0, phase Degraded until `retry` clears the field or the spec changes.
- Blue/green (`_preview`): the new revision runs behind `<name>-preview` with no
  traffic; a promotion (manual, or `autoPromote` after its delay) scales it up and
  swaps the `<name>`/`<name>-stable` selectors in one pass. Asking again for the
  previous stable revision while its pods are still up is a fast-track rollback.

Events are derived from what a pass changed, so deciding twice on the same inputs
emits nothing the second time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from modelship import api, devices, gates, manifests, revisions, traffic
from modelship.analysis import runs
from modelship.analysis.verdicts import RawMeasurement
from modelship.manifests import Manifest, Owner


@dataclass(frozen=True)
class ObservedDeployment:
    """What the shell read of one revision Deployment."""

    name: str
    spec_replicas: int
    generation: int = 1
    observed_generation: int = 0
    replicas: int = 0
    updated_replicas: int = 0
    available_replicas: int = 0
    minimum_available: bool = False  # the Deployment's own `Available` condition
    deadline_exceeded: bool = False  # its `Progressing` condition says ProgressDeadlineExceeded
    placement: str | None = None  # an accelerator revision's pod-template placement annotation


@dataclass(frozen=True)
class Observations:
    owner: Owner
    deployments: Mapping[str, ObservedDeployment] = field(default_factory=dict)
    # What `wants` asked the shell to measure, taken at `now`: run kind -> metric -> values.
    measurements: Mapping[str, Mapping[str, RawMeasurement]] = field(default_factory=dict)
    smoke: gates.SmokeObservation | None = None
    devices: devices.Capacity | None = None  # spec.accelerator's resource; None: not known


@dataclass(frozen=True)
class Wants:
    """What the shell should observe before `decide`: due analysis runs, a smoke test."""

    runs: tuple[api.AnalysisRun, ...] = ()
    smoke_revision: str | None = None


def wants(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> Wants:
    due = tuple(
        r
        for r in status.analysis or []
        if spec.analysis is not None
        and r.revision == status.canary_revision
        and runs.due(r, spec.analysis, now)
    )
    canary = status.canary_revision
    smoke = None
    if spec.smoke_test is not None and canary is not None and not status.canary_weight:
        recorded = status.smoke_test
        observed = observations.deployments.get(canary)
        fresh = recorded is None or recorded.revision != canary
        if fresh and observed is not None and _current(observed) and observed.available_replicas >= 1:
            smoke = canary
    return Wants(due, smoke)


@dataclass(frozen=True)
class Event:
    type: Literal["Normal", "Warning"]
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    status: api.ModelDeploymentStatus
    apply: tuple[Manifest, ...]
    delete: tuple[str, ...]  # names of revision Deployments to delete
    events: tuple[Event, ...]
    wake_at: datetime | None = None  # decide again then: a timed pause or a scale-down delay ends


def decide(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> Decision:
    template = revisions.template_of(spec)
    target = revisions.revision_name(observations.owner.name, template)
    measured, events = _measured(spec, status, observations, now)
    status = status.model_copy(update={"analysis": measured})
    if status.stable_revision is None or status.stable_template is None:
        # A stable pointer without its template cannot be re-rendered (status edited
        # by hand); treat it as unset rather than guess what the stable pods were.
        plan = _Plan(target, template, target=target, mode="first", stable_replicas=spec.replicas)
    else:
        plan = _Plan(status.stable_revision, status.stable_template, target=target)
        plan.events.extend(events)
        _roll(plan, spec, status, observations, now, template)
    return _finish(plan, spec, status, observations, now, template)


def _measured(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> tuple[list[api.AnalysisRun] | None, list[Event]]:
    """The status's analysis runs with this pass's measurements recorded, and their events."""
    if not status.analysis or spec.analysis is None:
        return status.analysis, []
    out, events = [], []
    for run in status.analysis:
        measured = observations.measurements.get(run.kind)
        if measured is not None and run.phase == "Running":
            run = runs.record(run, spec.analysis, measured, now)
            verdicts = [m.measurements[-1] for m in run.metrics if m.measurements]
            bad = any(v.verdict in ("Failed", "Error") for v in verdicts)
            summary = "; ".join(v.message for v in verdicts)
            events.append(
                Event("Warning" if bad else "Normal", "AnalysisMeasured", f"{run.kind} analysis: {summary}")
            )
            if run.phase != "Running":
                events.append(
                    Event(
                        "Normal" if run.phase == "Successful" else "Warning",
                        f"Analysis{run.phase}",
                        f"{run.kind} analysis of revision {run.revision}: {run.message}",
                    )
                )
        out.append(run)
    return out, events


Mode = Literal["first", "steady", "canary", "aborted"]  # "canary": any new revision in progress


@dataclass
class _Plan:
    """What one pass decided, before it is rendered into a Decision."""

    stable: str
    stable_template: api.RevisionTemplate
    target: str
    mode: Mode = "steady"
    stable_replicas: int = 0
    canary: str | None = None
    canary_replicas: int = 0
    step: int | None = None
    weight: int | None = None
    pause_start: datetime | None = None
    promote_full: bool | None = None
    aborted: str | None = None
    abort_reason: str | None = None
    abort_message: str | None = None
    abort_scale_down_at: datetime | None = None
    scale_down: str | None = None
    scale_down_at: datetime | None = None
    paused: tuple[str, str] | None = None  # (reason, message)
    promoted: bool = False
    rolled_back: bool = False
    promote_waiting: bool = False
    previous_template: api.RevisionTemplate | None = None
    waiting: str | None = None  # why the rollout is not moving on yet (a gate still deciding)
    runs: dict[str, api.AnalysisRun] = field(default_factory=dict)  # by kind
    smoke: api.SmokeTestResult | None = None
    device_blocked: tuple[str, str] | None = None  # (reason, message): InsufficientAccelerator
    events: list[Event] = field(default_factory=list)


def _roll(
    plan: _Plan,
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> None:
    """Fill `plan` for a ModelDeployment with a stable revision: steady, canary or aborted."""
    plan.stable_replicas = spec.replicas
    plan.aborted = status.aborted_revision
    plan.abort_reason, plan.abort_message = status.abort_reason, status.abort_message
    plan.abort_scale_down_at = status.abort_scale_down_at
    plan.runs = {r.kind: r for r in status.analysis or []}
    plan.smoke = status.smoke_test
    plan.scale_down, plan.scale_down_at = status.scale_down_revision, status.scale_down_at
    plan.previous_template = status.previous_template
    canary = status.canary_revision
    steps = spec.strategy.canary.steps if spec.strategy.canary else None

    if plan.target == plan.stable:
        plan.aborted = None
        if canary is not None:
            plan.rolled_back = True
            plan.events.append(
                Event(
                    "Warning",
                    "RolledBack",
                    f"spec reverted to the stable revision {plan.stable}: canary {canary} removed, "
                    "all traffic to stable",
                )
            )
    elif plan.aborted == plan.target:
        plan.mode = "aborted"
        if canary is not None:  # `modelship abort`: the status names the revision, nothing else yet
            _abort(plan, spec, now, "Aborted", f"rollout of revision {canary} aborted by `modelship abort`")
    else:
        plan.mode, plan.aborted = "canary", None
        if canary == plan.target:
            plan.step, plan.weight = status.current_step or 0, status.canary_weight or 0
            plan.pause_start, plan.promote_full = status.pause_start_time, status.promote_full
        else:
            if canary is not None:
                plan.events.append(
                    Event(
                        "Warning",
                        "CanaryReplaced",
                        f"spec asks for revision {plan.target}: canary {canary} removed (its traffic back "
                        "to stable first); the rollout restarts from step 0",
                    )
                )
            how = f"in {len(steps)} canary steps" if steps is not None else "as a blue/green preview"
            plan.events.append(
                Event(
                    "Normal",
                    "RolloutStarted",
                    f"rolling out revision {plan.target} {how}; revision {plan.stable} stays stable",
                )
            )
            plan.step, plan.weight = 0, 0
            plan.runs, plan.smoke = {}, None
        plan.canary = plan.target
        observed = observations.deployments.get(plan.target)
        if observed is not None and observed.deadline_exceeded and _current(observed):
            _abort(
                plan,
                spec,
                now,
                "ProgressDeadlineExceeded",
                f"canary {plan.target} made no progress within spec.progressDeadline "
                f"({spec.progress_deadline})",
                keep_pods=False,  # they never became ready: nothing to inspect that the Deployment lacks
            )
        elif (
            canary != plan.target
            and plan.target == status.scale_down_revision
            and _ready(observed, spec.replicas)
        ):
            # Fast-track rollback: the previous stable revision is still up (within its
            # scaleDownDelay), so going back to it is one move, no steps and no new pods.
            _promote(
                plan, spec, template, now, "back to the previous stable revision, whose pods were still up"
            )
        elif steps is None:
            _preview(plan, spec, observations, now, template)
        else:
            _walk(plan, spec, steps, observations, now, template)

    if plan.mode == "canary" and plan.canary is not None:
        _make_room(plan, spec, observations)
    if plan.mode != "canary":
        plan.canary = plan.step = plan.weight = plan.pause_start = plan.promote_full = None
        # The background analysis of a promoted canary is over; other runs stay to be read.
        background = plan.runs.get("background")
        if plan.promoted and background is not None and background.phase == "Running":
            plan.runs["background"] = background.model_copy(
                update={"phase": "Successful", "message": "the canary was promoted"}
            )
    if plan.mode != "aborted":
        plan.abort_reason = plan.abort_message = plan.abort_scale_down_at = None
    if plan.scale_down is not None and (
        plan.scale_down in (plan.stable, plan.canary) or (plan.scale_down_at and now >= plan.scale_down_at)
    ):
        if plan.scale_down not in (plan.stable, plan.canary):
            plan.events.append(
                Event("Normal", "ScaledDown", f"previous stable revision {plan.scale_down} scaled down")
            )
        plan.scale_down = plan.scale_down_at = None


def _walk(
    plan: _Plan,
    spec: api.ModelDeploymentSpec,
    steps: list[api.CanaryStep],
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> None:
    """Advance the canary through as many steps as the observations allow, then promote it."""
    assert plan.canary is not None and plan.step is not None and plan.weight is not None
    router = traffic.router_for(spec)
    observed = observations.deployments.get(plan.canary)
    n = len(steps)
    step, weight = min(plan.step, n), plan.weight
    if plan.promote_full:
        step = n
    if spec.paused:
        plan.paused = ("PausedBySpec", "spec.paused is true; `modelship resume` continues")
    analysis = spec.analysis
    background = analysis.background if analysis is not None else None
    blocked = plan.paused is not None
    if not blocked and background is not None and "background" in plan.runs:
        assert analysis is not None
        gate = gates.analysis_gate(
            "background", plan.canary, None, "background analysis", analysis, plan.runs["background"], now
        )
        blocked = _apply(plan, spec, gate, now, holds=False) in ("pause", "abort")
    if not blocked and weight == 0 and spec.smoke_test is not None:
        gate = gates.smoke_gate(spec.smoke_test, plan.canary, plan.smoke, observations.smoke, now)
        blocked = _apply(plan, spec, gate, now) != "pass"
    if plan.mode == "aborted":
        return
    while not blocked and plan.paused is None and step < n:
        current, label = steps[step], f"step {step + 1}/{n}"
        if current.set_weight is not None:
            wanted = current.set_weight
            replicas = router.replicas(spec.replicas, weight, wanted, _scale(steps, step), False)
            if not _ready(observed, replicas.canary):
                break
            if wanted != weight:
                plan.events.append(
                    Event("Normal", "WeightChanged", f"{label}: canary weight {weight}% -> {wanted}%")
                )
            weight, step = wanted, step + 1
        elif current.pause is not None:
            duration = current.pause.duration
            if plan.pause_start is None:
                plan.pause_start = now
                until = f"for {duration}" if duration else "until promoted"
                plan.events.append(Event("Normal", "PauseStarted", f"{label}: paused {until}"))
            if duration is None:
                plan.paused = ("CanaryPauseStep", f"{label}: paused until `modelship promote` is run")
                break
            ends = plan.pause_start + api.parse_duration(duration)
            if now < ends:
                plan.paused = ("CanaryPauseStep", f"{label}: paused until {ends:%Y-%m-%dT%H:%M:%SZ}")
                break
            plan.pause_start, step = None, step + 1
        elif current.set_canary_scale is not None:
            step += 1  # applies through _scale from the next step on
        else:
            assert analysis is not None  # admission requires spec.analysis for analysis steps
            gate = gates.analysis_gate("step", plan.canary, step, label, analysis, plan.runs.get("step"), now)
            if _apply(plan, spec, gate, now) != "pass":
                break
            step += 1
    if _aborted(plan):  # a gate in the loop rolled back
        return
    plan.step, plan.weight = step, weight
    if background is not None and step >= background.starting_step and "background" not in plan.runs:
        assert analysis is not None
        gate = gates.analysis_gate(
            "background", plan.canary, None, "background analysis", analysis, None, now
        )
        _apply(plan, spec, gate, now, holds=False)

    promoting = plan.paused is None and plan.waiting is None and step >= n
    in_step = steps[step] if step < n else None
    wanted = in_step.set_weight if in_step and in_step.set_weight is not None and not plan.paused else weight
    replicas = router.replicas(spec.replicas, weight, wanted or 0, _scale(steps, step), promoting)
    plan.stable_replicas, plan.canary_replicas = replicas.stable, replicas.canary
    if not promoting:
        return
    if not _ready(observed, replicas.canary):
        plan.promote_waiting = True
        return
    _promote(plan, spec, template, now, f"after {n} steps")


def _aborted(plan: _Plan) -> bool:
    return plan.mode == "aborted"


def _apply(
    plan: _Plan, spec: api.ModelDeploymentSpec, gate: gates.Gate, now: datetime, holds: bool = True
) -> gates.GateState:
    """Carry out a gate's answer. `holds=False` (background analysis): an undecided run holds nothing up."""
    if gate.run is not None:
        plan.runs[gate.run.kind] = gate.run
    if gate.smoke is not None:
        plan.smoke = gate.smoke
    if gate.event is not None:
        plan.events.append(Event(*gate.event))
    if gate.state == "abort":
        _abort(plan, spec, now, gate.reason, gate.message)
    elif gate.state == "pause":
        plan.paused = (gate.reason, gate.message)
    elif gate.state == "wait" and holds:
        plan.waiting = gate.message
    return gate.state


def _abort(
    plan: _Plan,
    spec: api.ModelDeploymentSpec,
    now: datetime,
    reason: str,
    message: str,
    keep_pods: bool = True,
) -> None:
    """Roll back now: all traffic to stable in this pass; the canary's pods (no traffic) stay for
    `abortScaleDownDelay` so people can look at them, then scale to 0."""
    strategy = spec.strategy.canary or spec.strategy.blue_green
    delay = api.parse_duration(strategy.abort_scale_down_delay if strategy and keep_pods else "0s")
    plan.mode, plan.aborted, plan.abort_reason, plan.abort_message = "aborted", plan.target, reason, message
    plan.abort_scale_down_at = now + delay if delay else None
    pods = f"its pods scale to 0 after {delay.total_seconds():g}s" if delay else "its pods scale to 0"
    plan.events.append(
        Event("Warning", reason, f"{message}; all traffic back to stable revision {plan.stable}, {pods}")
    )


def _make_room(plan: _Plan, spec: api.ModelDeploymentSpec, observations: Observations) -> None:
    """Device-aware replicas (see `modelship.devices`): the canary surges while devices are free;
    otherwise stable pods make room one at a time, or (`rollout: surge`) the rollout stops."""
    accelerator, observed = spec.accelerator, observations.devices
    if accelerator is None or observed is None or not devices.counts_resource(accelerator):
        return
    assert plan.canary is not None
    if _placement(plan.canary, accelerator, spec, observations) == "cpu":
        return
    decided = devices.plan(
        accelerator,
        (plan.stable_replicas, plan.canary_replicas),
        _revision(observations.deployments.get(plan.stable)),
        _revision(observations.deployments.get(plan.canary)),
        observed,
        plan.weight or 0,
        traffic.router_for(spec).shares_one_service,
    )
    plan.stable_replicas, plan.canary_replicas = decided.stable, decided.canary
    plan.device_blocked = decided.blocked


def _revision(observed: ObservedDeployment | None) -> devices.Revision:
    if observed is None:
        return devices.Revision(spec=0, ready=0, settled=True)
    settled = _current(observed) and observed.replicas <= observed.spec_replicas
    return devices.Revision(observed.spec_replicas, observed.available_replicas, settled)


def _placement(
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


def _device_conditions(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    plan: _Plan,
    on_cpu: list[str],
    observations: Observations,
) -> dict[str, ConditionValue]:
    """InsufficientAccelerator, AcceleratorFallback and HostDeviceMount, once they have applied."""
    out: dict[str, ConditionValue] = {}
    accelerator = spec.accelerator
    if plan.device_blocked:
        out["InsufficientAccelerator"] = ("True", *plan.device_blocked)
    elif _has(status, "InsufficientAccelerator"):
        out["InsufficientAccelerator"] = ("False", "DevicesAvailable", "the rollout has the devices it needs")
    if on_cpu and accelerator is not None:
        known = observations.devices.describe() if observations.devices else "capacity unknown"
        out["AcceleratorFallback"] = (
            "True",
            "NoFreeDevice",
            f"revision(s) {', '.join(on_cpu)} run on CPU nodes (spec.accelerator.fallback: cpu): the devices "
            f"cannot hold {spec.replicas} pod(s) x {accelerator.resource.count}; {known}",
        )
    elif _has(status, "AcceleratorFallback"):
        out["AcceleratorFallback"] = ("False", "OnDevices", "every revision runs on the accelerator nodes")
    if accelerator is not None and accelerator.host_path:
        path = api.HOST_DEVICE_PATHS[accelerator.interface]
        out["HostDeviceMount"] = (
            "True",
            "HostPathInUse",
            f"spec.accelerator.hostPath: {path} is mounted from the host into a privileged container, "
            "and the scheduler cannot count devices; install a device plugin and drop hostPath",
        )
    elif _has(status, "HostDeviceMount"):
        out["HostDeviceMount"] = ("False", "DevicePlugin", "the device comes from a device plugin")
    return out


def _device_events(old: api.ModelDeploymentStatus, new: list[api.Condition]) -> list[Event]:
    """A Warning each time one of the device conditions turns True."""
    before = {c.type: c.status for c in old.conditions or []}
    return [
        Event("Warning", c.type if c.type != "HostDeviceMount" else c.reason, c.message)
        for c in new
        if c.type in ("InsufficientAccelerator", "AcceleratorFallback", "HostDeviceMount")
        and c.status == "True"
        and before.get(c.type) != "True"
    ]


def _preview(
    plan: _Plan,
    spec: api.ModelDeploymentSpec,
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> None:
    """Blue/green: the new revision runs behind `<name>-preview` with no traffic. Once ready it
    must pass the smoke test and the pre-promotion analysis; then a promotion (manual, or
    automatic after `autoPromotionDelay`) scales it up and swaps the selectors. With a
    post-promotion analysis the switch comes first (`currentStep` 2, the old revision still
    up) and the pointers move only when it passes; failure switches back."""
    assert plan.canary is not None and spec.strategy.blue_green is not None
    blue_green = spec.strategy.blue_green
    observed = observations.deployments.get(plan.canary)
    preview = blue_green.preview_replicas or spec.replicas
    plan.weight, plan.canary_replicas = 0, preview
    if spec.paused:
        plan.paused = ("PausedBySpec", "spec.paused is true; `modelship resume` continues")
        return
    step = plan.step or 0
    if step < 2 and not plan.promote_full and not (step == 1 and _gates_passed(plan, spec)):
        if not _ready(observed, preview):
            return
        if plan.pause_start is None:
            plan.pause_start = now
            plan.events.append(
                Event(
                    "Normal",
                    "PreviewReady",
                    f"preview {plan.canary} is ready behind {observations.owner.name}-preview",
                )
            )
        if spec.smoke_test is not None:
            gate = gates.smoke_gate(spec.smoke_test, plan.canary, plan.smoke, observations.smoke, now)
            if _apply(plan, spec, gate, now) != "pass":
                return
        if blue_green.pre_promotion_analysis and spec.analysis is not None:
            gate = gates.analysis_gate(
                "prePromotion",
                plan.canary,
                None,
                "pre-promotion",
                spec.analysis,
                plan.runs.get("prePromotion"),
                now,
            )
            if _apply(plan, spec, gate, now) != "pass":
                return
        delay = api.parse_duration(blue_green.auto_promotion_delay or "0s")
        if step == 0 and (not blue_green.auto_promote or now < plan.pause_start + delay):
            until = (
                "`modelship promote` is run"
                if not blue_green.auto_promote
                else f"{plan.pause_start + delay:%H:%M:%SZ}"
            )
            plan.paused = ("PreviewPause", f"preview {plan.canary} ready; traffic switches when {until}")
            return
    plan.step, plan.pause_start, plan.canary_replicas = max(step, 1), None, spec.replicas
    if not _ready(observed, spec.replicas):
        plan.promote_waiting = True
        return
    if (
        blue_green.post_promotion_analysis
        and spec.analysis is not None
        and step < 3
        and not plan.promote_full
    ):
        plan.step, plan.weight = 2, 100  # switched; `modelship promote` (step 3) accepts it as it is
        gate = gates.analysis_gate(
            "postPromotion",
            plan.canary,
            None,
            "post-promotion",
            spec.analysis,
            plan.runs.get("postPromotion"),
            now,
        )
        if _apply(plan, spec, gate, now) != "pass":
            return
    _promote(plan, spec, template, now, "by switching the active Service")


def _gates_passed(plan: _Plan, spec: api.ModelDeploymentSpec) -> bool:
    """The preview passed its smoke test and pre-promotion analysis (or has none)."""
    smoke = plan.smoke
    if spec.smoke_test is not None and not (smoke and smoke.revision == plan.canary and smoke.passed):
        return False
    run = plan.runs.get("prePromotion")
    pre = spec.strategy.blue_green is not None and spec.strategy.blue_green.pre_promotion_analysis
    return not pre or (run is not None and run.revision == plan.canary and run.phase == "Successful")


def _promote(
    plan: _Plan, spec: api.ModelDeploymentSpec, template: api.RevisionTemplate, now: datetime, how: str
) -> None:
    """The pointers move to the new revision (no pod restarts); the old one stays for scaleDownDelay."""
    strategy = spec.strategy.canary or spec.strategy.blue_green
    delay = strategy.scale_down_delay if strategy is not None else "0s"
    old, new = plan.stable, plan.target
    plan.previous_template = plan.stable_template
    plan.scale_down, plan.scale_down_at = old, now + api.parse_duration(delay)
    plan.stable, plan.stable_template = new, template
    plan.mode, plan.promoted, plan.stable_replicas = "steady", True, spec.replicas
    plan.events.append(
        Event(
            "Normal",
            "Promoted",
            f"revision {new} promoted to stable {how}; previous revision {old} scales down after {delay}",
        )
    )


def _scale(steps: list[api.CanaryStep], step: int) -> api.CanaryScale | None:
    """The `setCanaryScale` in effect at `step` (the last one before it), if any."""
    for earlier in reversed(steps[:step]):
        if earlier.set_canary_scale is not None:
            return None if earlier.set_canary_scale.match_traffic_weight else earlier.set_canary_scale
    return None


def _current(observed: ObservedDeployment) -> bool:
    """The Deployment's status describes its current spec (not a scale we just asked for)."""
    return observed.observed_generation >= observed.generation


def _ready(observed: ObservedDeployment | None, replicas: int) -> bool:
    return observed is not None and _health(observed, replicas) == "Ready"


def _finish(
    plan: _Plan,
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
    template: api.RevisionTemplate,
) -> Decision:
    owner = observations.owner
    observed = observations.deployments.get(plan.stable)
    health = _health(observed, plan.stable_replicas)
    old_progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)

    # A rollback is remembered by the Progressing condition until the next rollout or promotion.
    plan.rolled_back = plan.rolled_back or (
        plan.mode == "steady"
        and not plan.promoted
        and old_progressing is not None
        and old_progressing.reason in ("RolledBack", "RollingBack")
    )
    stable: str | None = plan.stable
    stable_template: api.RevisionTemplate | None = plan.stable_template
    phase: api.Phase
    if plan.mode == "first":
        phase = _PHASES[health] if observed is not None else "Pending"
        if phase != "Healthy":
            stable = stable_template = None
    elif health in ("Missing", "Stuck") or plan.mode == "aborted":
        phase = "Degraded"
    elif plan.mode == "canary":
        phase = "Paused" if plan.paused else "Progressing"
    elif plan.rolled_back:
        phase = "RolledBack"  # at once: the canary is gone, even while stable scales back up
    elif health != "Ready":
        phase = "Progressing"
    else:
        phase = "Healthy"

    available = observed.available_replicas if observed else 0
    counts = f"revision {plan.stable}: {available}/{plan.stable_replicas} replicas available"
    progressing = _progressing(plan, spec, health, counts, phase, stable is not None, old_progressing)
    paused = ("True", plan.paused[0], plan.paused[1]) if plan.paused else ("False", "NotPaused", "not paused")
    wanted = [(plan.stable, plan.stable_template, plan.stable_replicas)]
    if plan.mode == "canary" and plan.canary:
        wanted.append((plan.canary, template, plan.canary_replicas))
    elif plan.mode == "aborted":
        # Kept (at 0 once `abortScaleDownDelay` is over) so `retry` only has to scale it up.
        aborted = observations.deployments.get(plan.target)
        inspect = plan.abort_scale_down_at is not None and now < plan.abort_scale_down_at
        wanted.append((plan.target, template, aborted.spec_replicas if aborted and inspect else 0))
    placements = {name: _placement(name, t.accelerator, spec, observations) for name, t, _ in wanted}
    on_cpu = [name for name, t, n in wanted if t.accelerator and placements[name] == "cpu" and n]
    conditions = _conditions(
        status,
        owner.generation,
        now,
        {"Available": _available(health, observed, plan.stable, counts), "Progressing": progressing}
        | ({"Paused": paused} if plan.mode == "canary" or _has(status, "Paused") else {})
        | _device_conditions(spec, status, plan, on_cpu, observations),
    )
    stable_selector = manifests.revision_selector(owner, plan.stable)
    canary_selector = manifests.revision_selector(owner, plan.canary) if plan.canary else stable_selector
    blue_green = spec.strategy.blue_green is not None
    # With the service router the canary joins `<name>` only once it is given a weight.
    shared = bool(
        plan.canary and plan.weight and traffic.router_for(spec).shares_one_service and not blue_green
    )
    # Blue/green switched but not promoted yet (post-promotion analysis): `<name>` is the new one.
    active = canary_selector if blue_green and plan.canary and plan.step == 2 else stable_selector
    new_status = status.model_copy(
        update={
            "observed_generation": owner.generation,
            "phase": phase,
            "stable_revision": stable,
            "stable_template": stable_template,
            "pending_revision": None,
            "canary_revision": plan.canary,
            "current_step": plan.step,
            "canary_weight": plan.weight,
            "pause_start_time": plan.pause_start,
            "promote_full": plan.promote_full or None,
            "aborted_revision": plan.aborted,
            "scale_down_revision": plan.scale_down,
            "scale_down_at": plan.scale_down_at,
            "previous_template": plan.previous_template,
            "analysis": list(plan.runs.values()) or None,
            "smoke_test": plan.smoke,
            "abort_reason": plan.abort_reason,
            "abort_message": plan.abort_message,
            "abort_scale_down_at": plan.abort_scale_down_at,
            "replicas": observed.replicas if observed else 0,
            "available_replicas": available,
            "selector": manifests.selector_string(stable_selector),
            "conditions": conditions,
        }
    )
    deadline = max(int(api.parse_duration(spec.progress_deadline).total_seconds()), 1)
    desired = [manifests.deployment(owner, name, t, n, deadline, placements[name]) for name, t, n in wanted]
    desired += [
        manifests.service(owner, owner.name, {manifests.MODEL_LABEL: owner.name} if shared else active),
        manifests.service(owner, f"{owner.name}-stable", stable_selector),
        manifests.service(owner, f"{owner.name}-canary", canary_selector),
    ]
    if spec.strategy.blue_green is not None:
        desired.append(manifests.service(owner, f"{owner.name}-preview", canary_selector))
    keep = {name for name, _, _ in wanted} | ({plan.scale_down} if plan.scale_down else set())
    delete = tuple(sorted(name for name in observations.deployments if name not in keep))
    events = tuple(plan.events) + _events(status, new_status) + tuple(_device_events(status, conditions))
    return Decision(new_status, tuple(desired), delete, events, _wake_at(plan, spec))


def _wake_at(plan: _Plan, spec: api.ModelDeploymentSpec) -> datetime | None:
    times = [t for t in (plan.scale_down_at, plan.abort_scale_down_at) if t is not None]
    if plan.mode == "canary" and spec.analysis is not None:
        for run in plan.runs.values():
            at = runs.next_at(run, spec.analysis)
            if at is not None and run.revision == plan.canary:
                times.append(at)
    steps = spec.strategy.canary.steps if spec.strategy.canary else []
    if plan.mode == "canary" and plan.pause_start and plan.step is not None and plan.step < len(steps):
        pause = steps[plan.step].pause
        if pause is not None and pause.duration:
            times.append(plan.pause_start + api.parse_duration(pause.duration))
    blue_green = spec.strategy.blue_green
    if plan.mode == "canary" and plan.pause_start and blue_green and blue_green.auto_promote:
        times.append(plan.pause_start + api.parse_duration(blue_green.auto_promotion_delay or "0s"))
    return min(times, default=None)


def _has(status: api.ModelDeploymentStatus, type_: str) -> bool:
    return any(c.type == type_ for c in status.conditions or [])


Health = Literal["Missing", "Ready", "Starting", "Stuck"]
_PHASES: dict[Health, api.Phase] = {
    "Missing": "Degraded",
    "Ready": "Healthy",
    "Starting": "Progressing",
    "Stuck": "Degraded",
}


def _health(observed: ObservedDeployment | None, replicas: int) -> Health:
    if observed is None:
        return "Missing"
    settled = _current(observed) and observed.spec_replicas == replicas
    if settled and observed.updated_replicas >= replicas and observed.available_replicas >= replicas:
        return "Ready"
    return "Stuck" if observed.deadline_exceeded else "Starting"


ConditionValue = tuple[str, str, str]  # (status, reason, message)


def _available(
    health: Health, observed: ObservedDeployment | None, serving: str, counts: str
) -> ConditionValue:
    if health == "Missing":
        return ("False", "DeploymentMissing", f"revision {serving} has no Deployment yet; creating it")
    if health == "Ready":
        return ("True", "ReplicasAvailable", counts)
    if observed is not None and observed.minimum_available:
        return ("True", "MinimumReplicasAvailable", counts)
    return ("False", "ReplicasUnavailable", counts)


def _progressing(
    plan: _Plan,
    spec: api.ModelDeploymentSpec,
    health: Health,
    counts: str,
    phase: api.Phase,
    has_stable: bool,
    old: api.Condition | None,
) -> ConditionValue:
    # Most urgent first: a stuck stable revision, then the rollout's own state, then pods coming up.
    if health == "Stuck":
        return ("False", "ProgressDeadlineExceeded", f"{counts}; no progress within spec.progressDeadline")
    if plan.mode == "aborted":
        why = f"{plan.abort_message}. " if plan.abort_message else ""
        return (
            "False",
            plan.abort_reason or "Aborted",
            f"{why}Rollout of revision {plan.target} aborted; revision {plan.stable} serves all traffic. "
            "`modelship retry` or a spec change starts again",
        )
    if plan.mode == "canary":
        n = len(spec.strategy.canary.steps) if spec.strategy.canary else 0
        where = (
            f"canary {plan.canary}: weight {plan.weight}%, step {min((plan.step or 0) + 1, n)}/{n}"
            if spec.strategy.canary
            else f"{plan.canary}: switched, serving all traffic until its post-promotion analysis passes"
            if plan.step == 2
            else f"preview {plan.canary}: no traffic until promoted"
        )
        if plan.paused:
            return ("True", "RolloutPaused", f"{where}; {plan.paused[1]}")
        if plan.promote_waiting:
            return ("True", "Promoting", f"{plan.canary}: promoting, waiting for all its replicas")
        if plan.waiting:
            return ("True", "Canarying", f"{where}; {plan.waiting}")
        return ("True", "Canarying", where)
    if plan.rolled_back:
        if health != "Ready":
            return ("True", "RollingBack", f"rolling back to revision {plan.stable}: {counts}")
        return ("False", "RolledBack", f"rolled back to revision {plan.stable}; the canary was removed")
    if health != "Ready":
        return ("True", "ReplicasStarting" if has_stable else "DeployingRevision", counts)
    return ("False", "RolloutComplete", f"revision {plan.stable} is stable and fully available")


def _conditions(
    old: api.ModelDeploymentStatus,
    generation: int,
    now: datetime,
    values: dict[str, ConditionValue],
) -> list[api.Condition]:
    previous = {c.type: c for c in old.conditions or []}
    out = []
    for type_, (state, reason, message) in values.items():
        before = previous.get(type_)
        changed = before is None or before.status != state
        out.append(
            api.Condition(
                type=type_,
                status=state,  # type: ignore[arg-type]
                reason=reason,
                message=message,
                last_transition_time=now if changed or before is None else before.last_transition_time,
                observed_generation=generation,
            )
        )
    # Conditions owned by later features (AnalysisFailed, ...) are kept as they are.
    out.extend(c for c in old.conditions or [] if c.type not in values)
    return out


def set_condition(
    status: api.ModelDeploymentStatus, type_: str, value: ConditionValue, now: datetime, generation: int
) -> api.ModelDeploymentStatus:
    """`status` with one condition set (for what only the shell can observe, e.g. a router's read-back)."""
    mine = _conditions(status, generation, now, {type_: value})[0]
    conditions = [mine if c.type == type_ else c for c in status.conditions or []]
    if all(c.type != type_ for c in conditions):
        conditions.append(mine)
    return status.model_copy(update={"conditions": conditions})


def _events(old: api.ModelDeploymentStatus, new: api.ModelDeploymentStatus) -> tuple[Event, ...]:
    events: list[Event] = []
    if new.stable_revision is not None and new.stable_revision != old.stable_revision:
        events.append(
            Event("Normal", "StableRevision", f"revision {new.stable_revision} is available and stable")
        )
    if new.phase != old.phase:
        message = next((c.message for c in new.conditions or [] if c.type == "Progressing"), "")
        events.append(Event("Warning" if new.phase == "Degraded" else "Normal", str(new.phase), message))
    return tuple(events)
