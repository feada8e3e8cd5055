"""A tiny pure stand-in for the cluster, to drive the engine in unit tests.

`World` holds observed revision Deployments; `decide` observes what the engine wants
(analysis measurements from `metrics`, a smoke test answered with `smoke_outputs`) as the
shell would; `apply` does what the shell does with a Decision (server-side apply of
Deployments, deletions); `settle` plays the Deployment controller and kubelet when every
pod becomes available.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from modelship import api
from modelship.core import control, engine, gates
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.manifests import Owner

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

    def observations(self, s: api.ModelDeploymentSpec | None = None) -> engine.Observations:
        base = engine.Observations(self.owner, dict(self.deployments))
        if s is None:
            return base
        wants = engine.wants(s, self.status, base, self.now)
        metrics = s.analysis.metrics if s.analysis else []
        measurements = {
            run.kind: {m.name: self.metrics.get(m.name, good(m)) for m in metrics} for run in wants.runs
        }
        self.measured.extend(measurements)
        smoke = None
        if wants.smoke_revision is not None and s.smoke_test is not None:
            outputs = self.smoke_outputs if self.smoke_outputs is not None else s.smoke_test.expected
            answers = tuple(o if isinstance(o, str) else tuple(o) for o in outputs)
            smoke = gates.SmokeObservation(wants.smoke_revision, (("pod-0", answers),))
        return dataclasses.replace(base, measurements=measurements, smoke=smoke)

    def decide(self, s: api.ModelDeploymentSpec) -> engine.Decision:
        return engine.decide(s, self.status, self.observations(s), self.now)

    def apply(self, decision: engine.Decision) -> None:
        for manifest in decision.apply:
            if manifest["kind"] != "Deployment":
                continue
            name, replicas = manifest["metadata"]["name"], manifest["spec"]["replicas"]
            old = self.deployments.get(name)
            if old is None:
                self.deployments[name] = engine.ObservedDeployment(name=name, spec_replicas=replicas)
            elif old.spec_replicas != replicas:
                self.deployments[name] = dataclasses.replace(
                    old, spec_replicas=replicas, generation=old.generation + 1
                )
        for name in decision.delete:
            self.deployments.pop(name, None)
        self.status = decision.status
        self.events.extend(decision.events)

    def reconcile(self, s: api.ModelDeploymentSpec) -> engine.Decision:
        decision = self.decide(s)
        self.apply(decision)
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
    verb: str, s: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, full: bool = False
) -> tuple[api.ModelDeploymentSpec, api.ModelDeploymentStatus]:
    """What `modelship <verb>` does to the CR: a merge patch of spec or status."""
    patch = control.patch_for(verb, s, status, full)
    if patch.target == "spec":
        return api.ModelDeploymentSpec.model_validate(merged(api.dump(s), patch.body)), status
    return s, api.ModelDeploymentStatus.model_validate(merged(api.dump(status), patch.body))


def merged(target: Any, patch: Any) -> Any:
    """`patch` applied to `target` as a JSON merge patch (RFC 7386), as the API server does."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merged(out.get(key), value)
    return out
