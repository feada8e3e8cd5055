"""A tiny pure stand-in for the cluster, to drive the engine in unit tests.

`World` holds observed revision Deployments; `decide` observes what the engine wants
(analysis measurements from `metrics`, an evaluation step's score too, a smoke test answered
with `smoke_outputs`) as the shell would; `apply` does what the shell does with a Decision
(server-side apply of Deployments, deletions); `settle` plays the Deployment controller and
kubelet when every pod becomes available.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from localworld.rollouts import merged
from modelship import api
from modelship.core import control, engine, evaluation, gates, gateway, jobs, traffic
from modelship.core.analysis.cadence import Scrape
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.manifests import REVISION_LABEL, Manifest, Owner
from modelship.core.shadow import Shadow

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def good(metric: api.Metric) -> RawMeasurement:
    """What Prometheus answers for a metric no test set: plenty of traffic, a value within bounds."""
    value = metric.min if metric.min is not None else 0.0
    return RawMeasurement(value=value, stable_value=value, requests=1e6)


OWNER = Owner(name="fraud", namespace="ml", uid="3f0e8a52-0000-4000-8000-000000000001", generation=1)


def spec(**overrides: object) -> api.ModelDeploymentSpec:
    base: dict[str, object] = {
        "model": {"name": "fraud", "version": "1", "sha256": "a" * 64},
        "image": "registry.example/fraud@sha256:" + "b" * 64,
        "replicas": 2,
        "strategy": {"canary": {"steps": [{"setWeight": 50}]}},
    }
    base.update(overrides)
    return api.ModelDeploymentSpec.model_validate(base)


@dataclass
class World:
    deployments: dict[str, engine.ObservedDeployment] = field(default_factory=dict)
    status: api.ModelDeploymentStatus = field(default_factory=api.ModelDeploymentStatus)
    owner: Owner = OWNER
    now: datetime = T0
    events: list[engine.Event] = field(default_factory=list)
    metrics: dict[str, RawMeasurement] = field(default_factory=dict)  # by metric name; else good()
    smoke_outputs: list[list[float] | str] | None = None  # None: each pod answers `expected`
    measured: list[str] = field(default_factory=list)  # run kinds measured, in order
    # The gatewayAPI route's weights as the gateway shows them (None: no route yet); a `Route` write
    # sets them unless `route_stuck` (someone or something keeps other weights there).
    route: dict[str, int] | None = None
    route_stuck: bool = False
    # The header rules the route shows (`RouteObservation.headers`), set by a `Route` write too.
    route_headers: dict[str, frozenset[gateway.HeaderTriple]] = field(default_factory=dict)
    route_shadow: Shadow | None = None  # the shadow the route marks requests for
    # The sticky sessions the route keeps (`RouteObservation.sessions`), set by a `Route` write too.
    route_sessions: dict[str, str] = field(default_factory=dict)
    # The gateway's word on the route (`RouteObservation.accepted`): None, no gateway reports;
    # False, it has not accepted the route as last written (down, or lagging).
    gateway_accepted: bool | None = None
    services: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> selector
    # Ready endpoints per Service as its EndpointSlices list them (None: not read). They lag the
    # Deployments: `list_endpoints` plays the EndpointSlice controller catching up.
    slices: dict[str, frozenset[str]] | None = None
    scrape: Scrape | None = None  # Prometheus' target metadata for the rolling revision
    evaluation_running: bool = False  # an evaluation step's Job has not finished yet
    # What the shell reads of a load test's Job `wants` asks for (None: not readable); its
    # name is filled in. The manifests asked for, in order, are in `load_jobs`.
    load_job: jobs.JobObservation | None = field(
        default_factory=lambda: jobs.JobObservation("", "Running", ready=True)
    )
    load_jobs: list[Manifest] = field(default_factory=list)
    # The Jobs the ModelDeployment owns, as the shell lists them: each load Job asked for (with the
    # state `load_job` gave it then), and any a test puts here; a `StopJob` write deletes one.
    owned_jobs: dict[str, jobs.JobObservation] = field(default_factory=dict)
    stopped_jobs: list[str] = field(default_factory=list)  # the names `StopJob` writes deleted

    def observations(self, s: api.ModelDeploymentSpec | None = None) -> engine.Observations:
        base = engine.Observations(
            self.owner, dict(self.deployments), scrape=self.scrape, services=frozenset(self.services)
        )
        if s is None:
            return base
        where = traffic.route_of(s)  # an HTTPRoute or a VirtualService: one observation for both
        if where is not None:
            seen = engine.RouteObservation(
                where[1],
                self.route,
                exists=self.route is not None,
                endpoints=dict(self.slices) if self.slices is not None else None,
                accepted=self.gateway_accepted,
                headers=dict(self.route_headers),
                shadow=self.route_shadow,
                sessions=dict(self.route_sessions),
                kind=where[0],
            )
            base = dataclasses.replace(base, route=seen)
        wants = engine.wants(s, self.status, base, self.now)
        measurements = {}
        for run in wants.runs:
            if run.kind == evaluation.KIND and self.evaluation_running:
                continue  # its Job has not finished: no measurement yet
            settings = evaluation.analysis_of(s, run)
            metrics = settings.metrics if settings is not None else []
            measurements[run.kind] = {m.name: self.metrics.get(m.name, good(m)) for m in metrics}
        self.measured.extend(measurements)
        smoke = None
        if wants.smoke_revision is not None and s.smoke_test is not None:
            outputs = self.smoke_outputs if self.smoke_outputs is not None else s.smoke_test.expected
            answers = tuple(o if isinstance(o, str) else tuple(o) for o in outputs)
            smoke = gates.SmokeObservation(wants.smoke_revision, (("pod-0", answers),))
        if wants.load_job is not None:
            self.load_jobs.append(wants.load_job)
            meta = wants.load_job["metadata"]
            if self.load_job is not None:  # as the shell reads it, with the labels it lists
                read = dataclasses.replace(self.load_job, name=meta["name"], labels=meta["labels"])
                self.owned_jobs[meta["name"]] = read
        return dataclasses.replace(base, measurements=measurements, smoke=smoke, jobs=dict(self.owned_jobs))

    def decide(self, s: api.ModelDeploymentSpec) -> engine.Decision:
        return engine.decide(s, self.status, self.observations(s), self.now)

    def apply(self, decision: engine.Decision, crash_after: int | None = None) -> None:
        """What the shell does with a Decision: the status first, then the writes in their order
        (only the first `crash_after` of them: the operator stopped there), then the events."""
        self.status = decision.status
        for write in decision.writes[:crash_after]:
            self.write(write)
        if crash_after is None:
            self.events.extend(decision.events)

    def write(self, write: engine.Write) -> None:
        if isinstance(write, engine.Delete):
            self.deployments.pop(write.name, None)
        elif isinstance(write, engine.DeleteService):
            self.services.pop(write.name, None)
        elif isinstance(write, engine.StopJob):
            self.owned_jobs.pop(write.name, None)
            self.stopped_jobs.append(write.name)
        elif isinstance(write, engine.Route):
            if not self.route_stuck:
                self.route = dict(write.weights)
                self.route_headers = gateway.headers_of(write.headers)
                self.route_shadow = write.shadow
                self.route_sessions = dict(write.sessions)
        elif write.manifest["kind"] == "Service":
            self.services[write.manifest["metadata"]["name"]] = dict(write.manifest["spec"]["selector"])
        else:
            manifest = write.manifest
            name, replicas = manifest["metadata"]["name"], manifest["spec"]["replicas"]
            old = self.deployments.get(name)
            if old is None:
                self.deployments[name] = engine.ObservedDeployment(name=name, spec_replicas=replicas)
            elif old.spec_replicas != replicas:
                self.deployments[name] = dataclasses.replace(
                    old, spec_replicas=replicas, generation=old.generation + 1
                )

    def ready_endpoints(self, service: str) -> int:
        """Ready pods behind a Service, by its selector (a revision, or every pod of the model)."""
        selector = self.services.get(service)
        if selector is None:
            return 0
        revision = selector.get(REVISION_LABEL)
        return sum(
            min(d.available_replicas, d.spec_replicas)
            for name, d in self.deployments.items()
            if revision is None or name == revision
        )

    def list_endpoints(self) -> None:
        """The ready pods behind each Service, named as a Deployment's pods are."""
        self.slices = {}
        for service, selector in self.services.items():
            revision = selector.get(REVISION_LABEL)
            self.slices[service] = frozenset(
                f"{name}-5d8f7c-{i}"
                for name, d in self.deployments.items()
                if revision is None or name == revision
                for i in range(min(d.available_replicas, d.spec_replicas))
            )

    def reconcile(self, s: api.ModelDeploymentSpec) -> engine.Decision:
        """One pass, as the shell runs it: a pass that changed the route's weights is followed by
        another that reads them back (the Reconciler's ROUTE_READBACK_SECONDS; here at the same
        `now`). Returns what both decided: the last status, every write and event."""
        before = (self.route_shadow, self.route, self.route_headers, self.route_sessions)
        decision = self.decide(s)
        self.apply(decision)
        if (
            decision.route is not None
            and (self.route_shadow, self.route, self.route_headers, self.route_sessions) != before
        ):
            first, decision = decision, self.decide(s)
            self.apply(decision)
            decision = dataclasses.replace(
                decision,
                writes=first.writes + decision.writes,
                events=first.events + decision.events,
                rolled_back=first.rolled_back or decision.rolled_back,
            )
        self.tick()
        return decision

    def settle(self) -> None:
        for name, d in self.deployments.items():
            self.deployments[name] = dataclasses.replace(
                d,
                observed_generation=d.generation,
                replicas=d.spec_replicas,
                updated_replicas=d.spec_replicas,
                available_replicas=d.spec_replicas,
                minimum_available=True,
                deadline_exceeded=False,
            )

    def tick(self, seconds: int = 5) -> None:
        self.now += timedelta(seconds=seconds)


def command(
    verb: str,
    s: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    full: bool = False,
    apply: bool = False,
) -> tuple[api.ModelDeploymentSpec, api.ModelDeploymentStatus]:
    """What `modelship <verb>` (`--apply`) does to the CR: a merge patch of the status (or, with
    `apply`, of the spec for undo and resume), or nothing."""
    patch = control.patch_for(verb, s, status, full, apply=apply)
    if patch.target == "spec":
        return api.ModelDeploymentSpec.model_validate(merged(api.dump(s), patch.body)), status
    return s, api.ModelDeploymentStatus.model_validate(merged(api.dump(status), patch.body))
