"""The operator may die after any write of a pass: users stay on ready pods, and the next passes
finish the move. Against the real API server, with reconcile passes driven in-process.

For each move a test makes `K` ModelDeployments (each with its own HTTPRoute) and brings them
all to the same point; then ModelDeployment k takes the pass that makes the move with a storage
that crashes after its k-th write (`Storage(crash_after=k)`).
After the crash, and again once the cluster has had a moment to act on what was written, no
backendRef with a weight above 0 may point at a Service that selects no Ready pod. Normal passes
then must complete the move. One ModelDeployment whose pass makes fewer than k writes shows that
every crash point was covered. Posting an Event is a write too; at the end every ModelDeployment's
Events say each transition once, as the one that never crashed says them (`Fleet.check_events`).

Moves: a blue/green switch here; the canary moves (a pause starting, a weight step, a promotion, a
new digest mid-rollout with the canary at 50% through the route, an abort) in one walk of one
fleet in test_event_recovery.py, which checks these same things at every crash point of each (a
fleet is slow to set up: one walk instead of a fleet per move). Manual verbs go through the kubectl
plugin's `run_verb` (`modelship.core.control.patch_for`), as a person's command would.
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from typing import Any, get_args

import pytest
from kubernetes import client

from localworld.rollouts import ModelDeployments, at, revision
from modelship import api, plugin
from modelship.core import manifests
from modelship.kube.reconciler import Reconciler
from modelship.kube.storage import (
    SimulatedCrash,
    Storage,
    deployments_path,
    pods_path,
    route_path,
    series_events_path,
    service_path,
)

from .mdhelpers import crd_installed, example, kube

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration

# Crash points tried per move: one more than the most writes a pass of these moves makes (11: a
# blue/green switch, a new digest mid-rollout). Each ModelDeployment costs a pass per round of
# every `drive`, so no more than that; `crash_every_point` says when a pass outgrows it.
K = 12
PHASES = set(get_args(api.Phase))  # a phase Event's reason is the new phase
LOG = logging.getLogger("test-crash-points")
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "abcd"}
# The preview is full size, so the pass after `promote` is the switch itself.
BLUE_GREEN = {"blueGreen": {"autoPromote": False, "previewReplicas": 2, "scaleDownDelay": "2s"}}


def md_manifest(name: str, image: str, strategy: dict[str, Any]) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["metadata"]["name"] = name
    doc["spec"].update(
        {
            "image": image,
            "replicas": 2,
            "strategy": copy.deepcopy(strategy),
            "traffic": {"router": "gatewayAPI", "httpRoute": name, "parentRefs": [{"name": "gw"}]},
        }
    )
    return doc


def ready(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions") or []
    live = not pod["metadata"].get("deletionTimestamp")
    return live and any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def unserved(kube: Storage, namespace: str, name: str) -> list[str]:
    """The route's backendRefs with weight that reach no Ready pod, and why."""
    route = kube.get(route_path(namespace, name))
    problems = []
    for rule in (route or {}).get("spec", {}).get("rules") or []:
        for ref in rule.get("backendRefs") or []:
            weight = ref.get("weight", 1)
            if weight <= 0:
                continue
            service = kube.get(service_path(namespace, ref["name"]))
            if service is None:
                problems.append(f"{name}: {ref['name']} has weight {weight} and no Service")
                continue
            selector = service["spec"].get("selector") or {}
            labels = ",".join(f"{k}={v}" for k, v in sorted(selector.items()))
            if not any(ready(p) for p in kube.items(pods_path(namespace), labelSelector=labels)):
                problems.append(f"{name}: {ref['name']} has weight {weight}, selects no Ready pod ({labels})")
    return problems


def route_weights(kube: Storage, namespace: str, name: str) -> dict[str, int]:
    route = kube.get(route_path(namespace, name)) or {}
    rules = route.get("spec", {}).get("rules") or [{}]
    return {r["name"]: r.get("weight", 1) for r in rules[0].get("backendRefs") or []}


def selects(kube: Storage, namespace: str, service: str) -> str | None:
    found = kube.get(service_path(namespace, service)) or {}
    return found.get("spec", {}).get("selector", {}).get(manifests.REVISION_LABEL)


class Fleet:
    """K ModelDeployments in one namespace, reconciled by in-process passes (no operator process)."""

    def __init__(self, api_client: client.ApiClient, kube: Storage, namespace: str, strategy: dict[str, Any]):
        self.api_client, self.kube, self.namespace = api_client, kube, namespace
        self.mds = ModelDeployments(kube, namespace)
        self.names = [f"m{k}" for k in range(1, K + 1)]
        self.strategy = strategy

    def step(self, name: str, crash_after: int | None = None) -> Storage:
        """One pass of `name`, with a storage of its own (the one a crash "kills")."""
        storage = Storage(self.api_client, crash_after)
        try:
            Reconciler(storage).step(self.namespace, name, LOG)
        except SimulatedCrash:
            assert storage.crashed
        return storage

    def drive(
        self, what: str, done: Callable[[str], bool], timeout: float = 150, served: bool = True
    ) -> None:
        """Normal passes of every ModelDeployment until `done`; users stay served throughout
        (`served=False`: the first deploy, when no pod is ready yet and the route has nowhere else)."""
        deadline = time.monotonic() + timeout
        waiting = list(self.names)
        while waiting:
            waiting = [name for name in waiting if not done(name)]
            for name in waiting:
                self.step(name)
                assert not served or not unserved(self.kube, self.namespace, name), unserved(
                    self.kube, self.namespace, name
                )
            if time.monotonic() > deadline:
                states = {n: self.mds.status(n) for n in waiting}
                raise TimeoutError(f"waiting for {what}: {states}")
            time.sleep(0.3)

    def status(self, name: str) -> dict[str, Any]:
        return self.mds.status(name)

    def manifest(self, name: str, image: str) -> dict[str, Any]:
        return md_manifest(name, image, self.strategy)

    def create(self) -> None:
        for name in self.names:
            self.mds.create(self.manifest(name, IMAGES["a"]))

        def healthy(name: str) -> bool:
            status = self.status(name)
            stable = revision(self.manifest(name, IMAGES["a"]))
            routed = route_weights(self.kube, self.namespace, name).get(f"{name}-stable") == 100
            return status.get("phase") == "Healthy" and status.get("stableRevision") == stable and routed

        self.drive("a Healthy stable revision behind its route", healthy, served=False)

    def set_image(self, image: str) -> None:
        for name in self.names:
            self.mds.patch(name, {"image": image})

    def verb(self, verb: str) -> None:
        for name in self.names:
            plugin.run_verb(self.kube, self.namespace, name, verb)

    def crash_every_point(self) -> dict[str, int]:
        """ModelDeployment k's next pass crashes after write k; returns the writes each one made.
        Checks users are on ready pods right after the crash and again a moment later."""
        made = {name: self.step(name, crash_after=k).writes for k, name in enumerate(self.names, 1)}
        print("writes made before each crash (or by the whole pass):", made)
        for name in self.names:
            assert not unserved(self.kube, self.namespace, name), (name, made[name])
        time.sleep(3)  # the Deployment controller and the garbage collector act on what was written
        for name in self.names:
            assert not unserved(self.kube, self.namespace, name), (name, made[name])
        crashed = [k for k, name in enumerate(self.names, 1) if made[name] >= k]
        completed = [k for k, name in enumerate(self.names, 1) if made[name] < k]
        assert completed, f"every pass crashed: raise K above {K} to reach the end of the pass ({made})"
        assert crashed == list(range(1, len(crashed) + 1)) and len(crashed) >= 3, made
        return made

    def transitions(self, name: str) -> list[dict[str, Any]]:
        """The transition Events about `name`, as events.k8s.io/v1 lists them by regarding uid (not
        an analysis round's series: a crash may lose one bump of its count)."""
        uid = (self.mds.get(name) or {})["metadata"]["uid"]
        items = self.kube.items(series_events_path(self.namespace), fieldSelector=f"regarding.uid={uid}")
        return [e for e in items if e["regarding"]["uid"] == uid and e["reason"] != "AnalysisMeasured"]

    def check_events(self) -> Counter[tuple[str, str]]:
        """After normal passes until nothing is left to do (a previous revision to scale down, Events
        recorded and not yet posted), every ModelDeployment's Events say each transition once:
        - its rollout's Events (a step, a pause, a promotion, an abort, ...) are those of the last
          ModelDeployment, whose passes never crashed, each as often; returns them;
        - its phase Events, in the order they were created, change the phase each time and end at
          its phase (how often one comes back depends on timing, not on crashes: a pass that sees
          a Deployment before its controller has acted says Progressing until it has);
        - no Event is there twice under two names (the same reason, note and time)."""

        def steady(name: str) -> bool:
            status = self.status(name)
            return not status.get("scaleDownRevision") and not status.get("pendingEvents")

        self.drive("steady, every recorded Event posted", steady)

        def rollout(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
            return Counter((e["type"], e["reason"]) for e in events if e["reason"] not in PHASES)

        expected = rollout(self.transitions(self.names[-1]))
        print("each ModelDeployment's rollout Events:", dict(expected))
        for name in self.names:
            events = sorted(self.transitions(name), key=lambda e: int(e["metadata"]["resourceVersion"]))
            assert rollout(events) == expected, name
            phases = [e["reason"] for e in events if e["reason"] in PHASES]
            assert all(a != b for a, b in pairwise(phases)), (name, phases)
            assert phases[-1] == self.status(name)["phase"], (name, phases)
            seen = Counter((e["reason"], e["note"], e["eventTime"]) for e in events)
            assert not [k for k, n in seen.items() if n > 1], (name, seen)
        return expected


def canary_at(fleet: Fleet, name: str, image: str, step: int, weight: int) -> bool:
    """`name`'s canary of `image` holds at `step`, its weight verified on the route, its pods ready."""
    status = fleet.status(name)
    rev = revision(fleet.manifest(name, image))
    shown = route_weights(fleet.kube, fleet.namespace, name)
    deployment = fleet.kube.get(deployments_path(fleet.namespace, rev)) or {}
    replicas = deployment.get("spec", {}).get("replicas", -1)
    return (
        at(status, "rollout.canary.revision") == rev
        and at(status, "rollout.canary.step") == step
        and shown == {f"{name}-stable": 100 - weight, f"{name}-canary": weight}
        and deployment.get("status", {}).get("availableReplicas", 0) == replicas
    )


def test_a_blue_green_switch_is_safe_at_every_crash_point(
    api_client: client.ApiClient, kube: Storage, namespace: str, crd_installed: None
) -> None:
    fleet = Fleet(api_client, kube, namespace, BLUE_GREEN)
    fleet.create()
    fleet.set_image(IMAGES["b"])

    def previewed(name: str) -> bool:
        status = fleet.status(name)
        green = revision(fleet.manifest(name, IMAGES["b"]))
        deployment = fleet.kube.get(deployments_path(fleet.namespace, green)) or {}
        return (
            at(status, "rollout.blueGreen.phase") == "Preview"
            and status.get("phase") == "Paused"
            and deployment.get("status", {}).get("availableReplicas", 0) == 2
        )

    fleet.drive("full-size previews, paused", previewed)
    fleet.verb("promote")
    fleet.crash_every_point()

    def switched(name: str) -> bool:
        status = fleet.status(name)
        green = revision(fleet.manifest(name, IMAGES["b"]))
        return (
            status.get("phase") == "Healthy"
            and status.get("stableRevision") == green
            and selects(fleet.kube, fleet.namespace, name) == green
        )

    fleet.drive("switched to green", switched)
    assert fleet.check_events()[("Normal", "Promoted")] == 1


def test_weights_edited_behind_the_operators_back_hold_the_step_until_rewritten(
    api_client: client.ApiClient, kube: Storage, namespace: str, crd_installed: None
) -> None:
    name = "edited"
    mds = ModelDeployments(kube, namespace)
    storage = Storage(api_client)
    reconciler = Reconciler(storage)

    def passes_until(
        what: str, probe: Callable[[dict[str, Any]], bool], timeout: float = 90
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reconciler.step(namespace, name, LOG)
            if probe(current := mds.status(name)):
                return current
            time.sleep(0.3)
        raise TimeoutError(f"waiting for {what}: {mds.status(name)}")

    steps = {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}], "scaleDownDelay": "2s"}}
    mds.create(md_manifest(name, IMAGES["a"], steps))
    passes_until("Healthy", lambda s: s.get("phase") == "Healthy")
    mds.patch(name, {"image": IMAGES["b"]})
    # The pass that sets weight 20 writes it to the route; the step completes on the read-back.
    passes_until("weight 20 asked", lambda s: at(s, "rollout.canary.weight") == 20)
    assert at(mds.status(name), "rollout.canary.step") == 0
    path = route_path(namespace, name)
    edited = kube.get(path) or {}
    for ref in edited["spec"]["rules"][0]["backendRefs"]:
        ref["weight"] = 100 if ref["name"] == f"{name}-stable" else 0
    kube.request("PUT", path, body=edited)  # someone else's edit, behind the operator's back

    reconciler.step(namespace, name, LOG)
    held = mds.status(name)
    assert at(held, "rollout.canary.step") == 0  # the step holds: its weight is not in effect
    routed = next(c for c in held["conditions"] if c["type"] == "TrafficRouted")
    assert (routed["status"], routed["reason"]) == ("False", "WeightMismatch")
    assert f"{name}-stable=100, {name}-canary=0" in routed["message"]
    assert f"{name}-stable=80, {name}-canary=20" in routed["message"]
    # That pass wrote the weights again; the next one reads them back and moves on.
    assert route_weights(kube, namespace, name) == {f"{name}-stable": 80, f"{name}-canary": 20}
    moved = passes_until("the pause step", lambda s: at(s, "rollout.canary.step") == 1)
    routed = next(c for c in moved["conditions"] if c["type"] == "TrafficRouted")
    assert (routed["status"], routed["reason"]) == ("True", "WeightsSet")
