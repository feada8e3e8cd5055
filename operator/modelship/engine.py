"""The rollout state machine, pure: `decide(spec, status, observations, now) -> Decision`.

No I/O, no clock, no randomness: the shell observes the cluster, calls `decide`, and
applies the Decision (server-side apply of `apply`, deletion of `delete`, the status,
the events). Every rule lives here.

This version deploys the first revision and keeps it healthy:

- No stable revision yet: deploy the spec's revision. Pending (its Deployment is not
  observed yet) -> Progressing -> Healthy once all its replicas are available; it then
  becomes `stableRevision` and its template is persisted in `status.stableTemplate`
  (so it can be re-created even after the spec moves on). If the spec changes before
  that, the unproven revision is simply replaced: it never served as stable.
- A stable revision: keep its Deployment at `spec.replicas` (scaling in place), and
  restore it and the Services if they drift or disappear. Healthy when all replicas
  are available; Progressing while pods come up (a scale-up, replaced pods);
  Degraded when its Deployment is missing or has exceeded its progress deadline
  (`spec.progressDeadline`), as Kubernetes itself reports it. The `Available`
  condition says how many replicas serve in every case.
- The spec asks for a different revision: rolling out is the strategies' job (not in
  this version), so nothing is deployed; the revision is recorded in
  `status.pendingRevision` and the stable revision keeps serving.

Events are derived from status transitions only, so deciding twice on the same
inputs emits nothing the second time.

Where rollouts plug in: the branch that sets `pending` today becomes "start or
continue a rollout of `target`" (canaryRevision, currentStep, canaryWeight in status;
a second Deployment and the canary/preview Services in `apply`); promotion moves
`stableRevision`/`stableTemplate` to the canary, exactly as the first revision's
promotion does here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from modelship import api, manifests, revisions
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


@dataclass(frozen=True)
class Observations:
    owner: Owner
    deployments: Mapping[str, ObservedDeployment] = field(default_factory=dict)


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


def decide(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> Decision:
    owner = observations.owner
    template = revisions.template_of(spec)
    target = revisions.revision_name(owner.name, template)

    stable, stable_template = status.stable_revision, status.stable_template
    if stable is not None and stable_template is None:
        # A stable pointer without its template cannot be re-rendered (status edited
        # by hand); treat it as unset rather than guess what the stable pods were.
        stable = None
    serving, serving_template = (
        (stable, stable_template) if stable is not None and stable_template else (target, template)
    )
    observed = observations.deployments.get(serving)
    health = _health(observed, spec.replicas)

    phase: api.Phase
    if stable is None:
        phase = _PHASES[health] if observed is not None else "Pending"
        if phase == "Healthy":
            stable, stable_template = target, template
    else:
        phase = _PHASES[health]
    pending = target if stable is not None and target != stable else None

    selector = manifests.revision_selector(owner, serving)
    conditions = _conditions(
        status, owner.generation, now, serving, health, observed, spec.replicas, pending, stable is not None
    )
    new_status = status.model_copy(
        update={
            "observed_generation": owner.generation,
            "phase": phase,
            "stable_revision": stable,
            "stable_template": stable_template,
            "pending_revision": pending,
            "replicas": observed.replicas if observed else 0,
            "available_replicas": observed.available_replicas if observed else 0,
            "selector": manifests.selector_string(selector),
            "conditions": conditions,
        }
    )
    deadline = int(api.parse_duration(spec.progress_deadline).total_seconds())
    desired = (
        manifests.deployment(owner, serving, serving_template, spec.replicas, max(deadline, 1)),
        manifests.service(owner, owner.name, {manifests.MODEL_LABEL: owner.name}),
        manifests.service(owner, f"{owner.name}-stable", selector),
    )
    delete = tuple(sorted(name for name in observations.deployments if name != serving))
    return Decision(new_status, desired, delete, _events(status, new_status, target))


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
    settled = observed.observed_generation >= observed.generation and observed.spec_replicas == replicas
    if settled and observed.updated_replicas >= replicas and observed.available_replicas >= replicas:
        return "Ready"
    return "Stuck" if observed.deadline_exceeded else "Starting"


def _conditions(
    old: api.ModelDeploymentStatus,
    generation: int,
    now: datetime,
    serving: str,
    health: Health,
    observed: ObservedDeployment | None,
    replicas: int,
    pending: str | None,
    serving_is_stable: bool,
) -> list[api.Condition]:
    available = observed.available_replicas if observed else 0
    counts = f"revision {serving}: {available}/{replicas} replicas available"
    if health == "Missing":
        avail = ("False", "DeploymentMissing", f"revision {serving} has no Deployment yet; creating it")
    elif health == "Ready":
        avail = ("True", "ReplicasAvailable", counts)
    elif observed is not None and observed.minimum_available:
        avail = ("True", "MinimumReplicasAvailable", counts)
    else:
        avail = ("False", "ReplicasUnavailable", counts)

    # Most urgent first: a stuck revision, then a revision the spec wants but this
    # version will not roll out (pods restarting do not hide it), then pods coming up.
    if health == "Stuck":
        progressing = (
            "False",
            "ProgressDeadlineExceeded",
            f"{counts}; no progress within spec.progressDeadline",
        )
    elif pending is not None:
        progressing = (
            "False",
            "RevisionPending",
            f"spec asks for revision {pending}, but rolling out a new revision is not supported by this "
            f"modelship version; revision {serving} keeps serving",
        )
    elif health != "Ready":
        progressing = ("True", "ReplicasStarting" if serving_is_stable else "DeployingRevision", counts)
    else:
        progressing = ("False", "RolloutComplete", f"revision {serving} is stable and fully available")

    previous = {c.type: c for c in old.conditions or []}
    out = []
    for type_, (state, reason, message) in (("Available", avail), ("Progressing", progressing)):
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
    # Conditions owned by later features (Paused, AnalysisFailed, ...) are kept as they are.
    out.extend(c for c in old.conditions or [] if c.type not in ("Available", "Progressing"))
    return out


def _events(old: api.ModelDeploymentStatus, new: api.ModelDeploymentStatus, target: str) -> tuple[Event, ...]:
    events: list[Event] = []
    if new.stable_revision is not None and new.stable_revision != old.stable_revision:
        events.append(
            Event("Normal", "StableRevision", f"revision {new.stable_revision} is available and stable")
        )
    if new.pending_revision is not None and new.pending_revision != old.pending_revision:
        events.append(
            Event(
                "Warning",
                "RevisionPending",
                f"spec asks for revision {target}; rollouts between revisions are not supported by this "
                f"modelship version, so revision {new.stable_revision} keeps serving",
            )
        )
    if new.phase != old.phase:
        message = next((c.message for c in new.conditions or [] if c.type == "Available"), "")
        events.append(Event("Warning" if new.phase == "Degraded" else "Normal", str(new.phase), message))
    return tuple(events)
