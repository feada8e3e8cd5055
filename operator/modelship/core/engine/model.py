"""The data the engine reads (observations) and returns (a Decision), the Context and Outcome of one
pass, and small pure helpers about one observed revision Deployment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from modelship import api
from modelship.core import devices, gates, gateway
from modelship.core.analysis.cadence import Scrape
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.jobs import JobObservation
from modelship.core.manifests import Manifest, Owner
from modelship.core.notifications import Delivery
from modelship.core.shadow import Shadow


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
    # Why its pods refuse the model (core/sources.checksum_failure): a checksum mismatch aborts
    # the rollout at once instead of waiting out the progress deadline.
    model_failure: str | None = None
    placement: str | None = None  # an accelerator revision's pod-template placement annotation


@dataclass(frozen=True)
class RouteObservation:
    """What the router read back from its route object (an HTTPRoute, a VirtualService) before this pass."""

    route: str  # spec.traffic.httpRoute or spec.traffic.virtualService.name
    # Backend Service -> weight in the rule modelship manages; None: no such rule (or no route yet).
    weights: Mapping[str, int] | None
    exists: bool = True  # False: the HTTPRoute itself is missing
    # Backend Service -> the ready pods its EndpointSlices list, by name (the gateway sends traffic
    # only to those); None: not read (the operator may not list EndpointSlices).
    endpoints: Mapping[str, frozenset[str]] | None = None
    # Every gateway reporting on the route accepted its current generation (`gateway.accepted`);
    # None: no gateway reports on it.
    accepted: bool | None = None
    # Header route name -> the headers its rule matches (`gateway.read_headers`): the header rules
    # modelship wrote, which send to `<name>-canary` whatever the weights.
    headers: Mapping[str, frozenset[gateway.HeaderTriple]] = field(default_factory=dict)
    shadow: Shadow | None = None  # the shadow the weighted rule marks requests for (`shadow.read`)
    kind: str = "HTTPRoute"  # the route object's kind, for messages (`traffic.ROUTE_KINDS`)
    # Backend Service -> the revision its session rule keeps (`gateway.read_sessions`; sticky sessions).
    sessions: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Observations:
    owner: Owner
    deployments: Mapping[str, ObservedDeployment] = field(default_factory=dict)
    # What `wants` asked the shell to measure, taken at `now`: run kind -> metric -> values.
    measurements: Mapping[str, Mapping[str, RawMeasurement]] = field(default_factory=dict)
    smoke: gates.SmokeObservation | None = None
    devices: devices.Capacity | None = None  # spec.accelerator's resource; None: not known
    route: RouteObservation | None = None  # None: the router has no route to read (service router)
    scrape: Scrape | None = None  # how Prometheus scrapes the rolling revision; None: not known
    # The ModelDeployment's metadata.resourceVersion as read: one status write can succeed from it,
    # so it names the transition Events of the pass that writes one (`events.recorded`).
    resource_version: str = ""
    # The last notification delivery to each target, as the shell saw it (`notifications.condition`);
    # empty: none since the operator started, and the condition stays as it was.
    notifications: Mapping[str, Delivery] = field(default_factory=dict)
    # The Jobs the ModelDeployment owns, by name, with their labels: the one `wants` asked the shell
    # to run (a load test's) as read in full, the others as listed (`engine.jobs.stale` reads them).
    jobs: Mapping[str, JobObservation] = field(default_factory=dict)
    # The Services the ModelDeployment owns, by name (an experiment's `<name>-challenger` is deleted
    # once the route no longer sends to it); None: not read.
    services: frozenset[str] | None = None


@dataclass(frozen=True)
class Wants:
    """What the shell should observe before `decide`: due analysis runs and those probing at the
    scrape cadence (`cadence.fast`), a smoke test."""

    runs: tuple[api.AnalysisRun, ...] = ()
    smoke_revision: str | None = None
    load_job: Manifest | None = None  # a load test's Job: create it if missing, observe it


@dataclass(frozen=True)
class Event:
    """One Event on the ModelDeployment. A transition (a phase, a step, a verdict) is one Event each
    time; a repeat (`series` set: an analysis round) is one Event per series, reason and type, whose
    count the shell bumps, so its message must hold for every repeat.

    A transition in a Decision has its object's `name` and the `at` it was decided, from the record
    in status.pendingEvents that lets it survive a crash (`events`); the rules leave both unset."""

    type: Literal["Normal", "Warning"]
    reason: str
    message: str
    series: str | None = None
    name: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class Apply:
    """Server-side apply of one object the ModelDeployment owns (a revision Deployment, a Service)."""

    manifest: Manifest


@dataclass(frozen=True)
class Delete:
    """Delete one revision Deployment (by name)."""

    name: str


@dataclass(frozen=True)
class DeleteService:
    """Delete one Service (by name): an experiment's `<name>-challenger`, once nothing routes to it."""

    name: str


@dataclass(frozen=True)
class Route:
    """Set the weights of the HTTPRoute rule modelship manages (backend Service -> weight), and its
    header rules (`setHeaderRoute`: requests with these headers go to `<name>-canary`)."""

    weights: Mapping[str, int]
    headers: tuple[api.HeaderRoute, ...] = ()
    # Sticky sessions: backend Service -> the revision its answers are stamped with and its session
    # rule keeps (`gateway.sessions`); empty without spec.traffic.sessionAffinity.
    sessions: Mapping[str, str] = field(default_factory=dict)
    shadow: Shadow | None = None  # a shadow step's mark on the weighted rule (core/shadow.py)

    def moves(self, seen: RouteObservation) -> bool:
        """Whether writing it changes what the route was read to send where."""
        if self.shadow != seen.shadow:
            return True
        weights_move = dict(self.weights) != dict(seen.weights or {})
        sessions_move = dict(self.sessions) != dict(seen.sessions)
        return weights_move or sessions_move or gateway.headers_of(self.headers) != dict(seen.headers)


@dataclass(frozen=True)
class StopJob:
    """Delete one running Job (by name) and its pods: it no longer belongs to the rollout."""

    name: str


Write = Apply | Delete | DeleteService | Route | StopJob


@dataclass(frozen=True)
class Decision:
    """What one pass decided. The shell writes `status` first (guarded by the resourceVersion the
    pass read), then `writes` in their order, then posts `events`."""

    status: api.ModelDeploymentStatus
    # In the order that keeps users on ready pods if the operator stops after any one of them
    # (`writes.ordered`).
    writes: tuple[Write, ...]
    events: tuple[Event, ...]
    wake_at: datetime | None = None  # decide again then: a timed pause or a scale-down delay ends
    rolled_back: str | None = None  # this pass rolled a rollout back: why (AnalysisFailed, RolledBack, ...)

    @property
    def apply(self) -> tuple[Manifest, ...]:
        return tuple(w.manifest for w in self.writes if isinstance(w, Apply))

    @property
    def delete(self) -> tuple[str, ...]:
        return tuple(w.name for w in self.writes if isinstance(w, Delete))

    @property
    def route(self) -> Route | None:
        return next((w for w in self.writes if isinstance(w, Route)), None)


Mode = Literal["first", "steady", "rolling", "aborted"]  # "rolling": a canary or blue/green in progress

SWITCHED = api.SWITCHED


@dataclass(frozen=True)
class Context:
    """Everything one pass decides from, built once and read by every rule."""

    spec: api.ModelDeploymentSpec
    status: api.ModelDeploymentStatus  # as read, with this pass's measurements recorded
    observations: Observations
    now: datetime
    template: api.RevisionTemplate  # the spec's revision template
    target: str  # its revision name

    def observed(self, name: str | None) -> ObservedDeployment | None:
        return self.observations.deployments.get(name) if name is not None else None


@dataclass(frozen=True)
class Outcome:
    """What one pass decided, before `status.finish` renders it into a Decision. Frozen: each rule
    returns a new Outcome (`but`, `said`), so no rule writes to another's state."""

    stable: str
    stable_template: api.RevisionTemplate
    mode: Mode = "steady"
    stable_replicas: int = 0
    canary: str | None = None  # the revision rolling out (a canary or a blue/green preview)
    canary_replicas: int = 0
    step: int | None = None  # canary: the step in progress
    phase: api.BlueGreenPhase | None = None  # blue/green: where the switch is
    weight: int | None = None  # the traffic the new revision is given
    header_routes: tuple[api.HeaderRoute, ...] = ()  # canary: what setHeaderRoute steps added
    shadow_percent: int | None = None  # canary: what the last shadow step set (None: no shadow)
    # canary: an experiment step's challenger revision while it runs, and its weight in the route
    challenger: str | None = None
    challenger_weight: int = 0
    # canary: the pause or loadTest step's start; blue/green: when the preview was ready
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
    rolled_back: str | None = None  # the revision a spec revert took back (phase RolledBack)
    promote_waiting: bool = False
    previous_template: api.RevisionTemplate | None = None
    waiting: str | None = None  # why the rollout is not moving on yet (a gate still deciding)
    runs: Mapping[str, api.AnalysisRun] = field(default_factory=dict)  # by kind
    smoke: api.SmokeTestResult | None = None
    device_blocked: tuple[str, str] | None = None  # (reason, message): InsufficientAccelerator
    recheck: bool = False  # a Job the pass waits for is starting: look again soon
    events: tuple[Event, ...] = ()

    def but(self, **changes: Any) -> Outcome:
        return dataclasses.replace(self, **changes)

    def said(self, *events: Event) -> Outcome:
        return dataclasses.replace(self, events=self.events + events)

    def with_run(self, run: api.AnalysisRun) -> Outcome:
        return dataclasses.replace(self, runs={**self.runs, run.kind: run})


Health = Literal["Missing", "Ready", "Starting", "Stuck"]


ConditionValue = api.ConditionValue


def current(observed: ObservedDeployment) -> bool:
    """The Deployment's status describes its current spec (not a scale we just asked for)."""
    return observed.observed_generation >= observed.generation


def ready(observed: ObservedDeployment | None, replicas: int) -> bool:
    return observed is not None and health_of(observed, replicas) == "Ready"


def health_of(observed: ObservedDeployment | None, replicas: int) -> Health:
    if observed is None:
        return "Missing"
    settled = current(observed) and observed.spec_replicas == replicas
    if settled and observed.updated_replicas >= replicas and observed.available_replicas >= replicas:
        return "Ready"
    # A model that fails its checksum never becomes ready: stuck now, not at the progress deadline.
    return "Stuck" if observed.deadline_exceeded or observed.model_failure is not None else "Starting"


def live(status: api.ModelDeploymentStatus, run: api.AnalysisRun) -> bool:
    """The run belongs to the rollout in progress: its revision's, and a step's, an evaluation's or
    an experiment's run of the step in progress (not one `modelship promote` moved past)."""
    step = status.canary.step if status.canary is not None else None
    stepped = ("step", "evaluation", "experiment")
    return run.revision == status.rolling and (run.kind not in stepped or run.step == step)


def pause_of(ctx: Context) -> tuple[str, str] | None:
    """The pause that holds the whole rollout, as (reason, message): `spec.paused` (declarative, in
    Git) or `status.pause` (`modelship pause`, which a GitOps tool leaves alone); either holds."""
    by_hand = ctx.status.pause
    asked = None
    if by_hand is not None:
        at = f" at {by_hand.at:%Y-%m-%dT%H:%M:%SZ}" if by_hand.at else ""
        asked = f"paused by {by_hand.by}{at}"
    if ctx.spec.paused:
        also = f" (also {asked}: status.pause)" if asked else ""
        return ("PausedBySpec", f"spec.paused is true{also}; set it to false in the manifest to continue")
    if asked is not None:
        return ("PausedByUser", f"{asked} (status.pause); `modelship resume` continues")
    return None


def has(status: api.ModelDeploymentStatus, type_: str) -> bool:
    return any(c.type == type_ for c in status.conditions or [])
