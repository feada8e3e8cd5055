"""A tiny pure stand-in for the cluster, to drive the engine in unit tests.

`World` holds observed revision Deployments; `apply` does what the shell would do
with a Decision (server-side apply of Deployments, deletions); `settle` plays the
Deployment controller and kubelet when every pod becomes available.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from modelship import api, control, engine
from modelship.manifests import Owner

T0 = datetime(2026, 1, 1, tzinfo=UTC)
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

    def observations(self) -> engine.Observations:
        return engine.Observations(self.owner, dict(self.deployments))

    def decide(self, s: api.ModelDeploymentSpec) -> engine.Decision:
        return engine.decide(s, self.status, self.observations(), self.now)

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
        merged = {**api.dump(s), **patch.body}
        return api.ModelDeploymentSpec.model_validate(
            {k: v for k, v in merged.items() if v is not None}
        ), status
    merged = {**api.dump(status), **patch.body}
    return s, api.ModelDeploymentStatus.model_validate({k: v for k, v in merged.items() if v is not None})
