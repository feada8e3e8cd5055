"""The shell around the engine: read the ModelDeployment and what it owns, decide, apply.

`Reconciler.reconcile(namespace, name)` is safe to call from any trigger (watch
events of the ModelDeployment or of its children, the periodic resync) and from
several threads: one lock per ModelDeployment serialises the passes, and every pass
re-reads the object so a stale body never overwrites a newer status.
"""

from __future__ import annotations

import base64
import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelship import api, metrics
from modelship.analysis import measure
from modelship.core import devices, engine, manifests
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.kube import routes, smoke
from modelship.kube.client import FIELD_MANAGER, Kube, KubeError

COMPONENT = "modelship"
MERGE = "application/merge-patch+json"


def merge_patch(old: Any, new: Any) -> Any:
    """The JSON merge patch (RFC 7386) from `old` to `new`: null removes a key, lists are replaced.

    The operator writes status this way, not by server-side apply: fields a person set
    with `modelship abort` (another field manager) must go away when the operator drops them.
    """
    if not isinstance(old, dict) or not isinstance(new, dict):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() | new.keys():
        if key not in new:
            patch[key] = None
        elif key not in old:
            patch[key] = new[key]
        elif old[key] != new[key]:
            patch[key] = merge_patch(old[key], new[key]) if isinstance(new[key], dict) else new[key]
    return patch


def md_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{api.GROUP}/{api.VERSION}/namespaces/{namespace}/{api.PLURAL}"
    return f"{base}/{name}" if name else base


def object_path(manifest: dict[str, Any]) -> str:
    meta = manifest["metadata"]
    prefix = "/api/v1" if manifest["apiVersion"] == "v1" else f"/apis/{manifest['apiVersion']}"
    return f"{prefix}/namespaces/{meta['namespace']}/{manifest['kind'].lower()}s/{meta['name']}"


def utcnow() -> datetime:
    # Kubernetes timestamps have second precision; keeping ours the same makes a
    # status read back from the API compare equal to the one we wrote.
    return datetime.now(UTC).replace(microsecond=0)


def observe_deployment(obj: dict[str, Any]) -> engine.ObservedDeployment:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    return engine.ObservedDeployment(
        name=obj["metadata"]["name"],
        spec_replicas=spec.get("replicas", 1),
        generation=obj["metadata"].get("generation", 1),
        observed_generation=status.get("observedGeneration", 0),
        replicas=status.get("replicas", 0),
        updated_replicas=status.get("updatedReplicas", 0),
        available_replicas=status.get("availableReplicas", 0),
        minimum_available=conditions.get("Available", {}).get("status") == "True",
        deadline_exceeded=conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded",
        placement=((spec.get("template") or {}).get("metadata") or {})
        .get("annotations", {})
        .get(devices.PLACEMENT_ANNOTATION),
    )


def observe_devices(
    kube: Kube, owner: manifests.Owner, spec: api.ModelDeploymentSpec
) -> devices.Capacity | None:
    """The accelerator resource on the nodes that hold the device: None when there is no
    accelerator, nothing counts the device (hostPath), or the operator may not list nodes and
    pods cluster-wide (namespaced installs): rollouts then surge as plain Deployments do."""
    accelerator = spec.accelerator
    if accelerator is None or not devices.counts_resource(accelerator):
        return None
    terms = devices.node_terms(accelerator)
    try:
        found: dict[str, dict[str, Any]] = {}
        for term in terms:
            selector = ",".join(f"{k}={v}" for k, v in sorted(term.items()))
            for node in kube.request("GET", "/api/v1/nodes", query={"labelSelector": selector})["items"]:
                found[node["metadata"]["name"]] = node
        pods: list[dict[str, Any]] = []
        for name in sorted(found):
            query = {"fieldSelector": f"spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed"}
            pods += kube.request("GET", "/api/v1/pods", query=query)["items"]
    except KubeError as err:
        if err.status == 403:
            return None
        raise
    model = (owner.namespace, {manifests.MODEL_LABEL: owner.name})
    return devices.capacity(found.values(), pods, terms, accelerator.resource.name, model)


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


class Reconciler:
    def __init__(
        self,
        kube: Kube,
        clock: Callable[[], datetime] = utcnow,
        prometheus: measure.Defaults | None = None,
    ) -> None:
        self.kube = kube
        self.clock = clock
        self.prometheus = prometheus or measure.Defaults()
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._timers: dict[tuple[str, str], tuple[float, threading.Timer]] = {}
        self._guard = threading.Lock()
        self._instance = socket.gethostname()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)
            timer = self._timers.pop((namespace, name), None)
        if timer is not None:
            timer[1].cancel()

    def reconcile(
        self, namespace: str, name: str, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        with self._lock(namespace, name):
            body = self.kube.get(md_path(namespace, name))
            if body is None or body["metadata"].get("deletionTimestamp"):
                return  # gone or going: the garbage collector removes what it owned
            with metrics.RECONCILE_SECONDS.time():
                self._reconcile(body, logger)

    def _reconcile(self, body: dict[str, Any], logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        meta = body["metadata"]
        owner = manifests.Owner(meta["name"], meta["namespace"], meta["uid"], meta.get("generation", 1))
        spec = api.ModelDeploymentSpec.model_validate(body["spec"])
        status = api.read_status(body.get("status"), spec)

        listed = self.kube.request(
            "GET",
            f"/apis/apps/v1/namespaces/{owner.namespace}/deployments",
            query={"labelSelector": f"{manifests.MODEL_LABEL}={owner.name}"},
        )
        deployments = {
            obj["metadata"]["name"]: observe_deployment(obj)
            for obj in listed.get("items", [])
            if owned_by(obj, owner.uid)
        }
        now = self.clock()
        observed = engine.Observations(owner, deployments, devices=observe_devices(self.kube, owner, spec))
        observations = self._observe(owner, spec, status, observed, now, logger)
        decision = engine.decide(spec, status, observations, now)

        # Status first, with the resourceVersion we decided on: a manual command
        # (`modelship promote`, ...) that patched the status meanwhile wins, and this
        # pass is dropped before it applies anything; the command's own watch event
        # triggers the next pass.
        patch = merge_patch(api.dump(status), api.dump(decision.status))
        version = meta["resourceVersion"]
        if patch:
            try:
                version = self.kube.request(
                    "PATCH",
                    md_path(owner.namespace, owner.name) + "/status",
                    query={"fieldManager": FIELD_MANAGER},
                    body={"metadata": {"resourceVersion": version}, "status": patch},
                    content_type=MERGE,
                )["metadata"]["resourceVersion"]
            except KubeError as err:
                if err.status != 409:
                    raise
                logger.info("the ModelDeployment changed during this pass; deciding again on the next one")
                return
        metrics.record_pass(owner.namespace, owner.name, status, decision.status, decision.rolled_back)
        for manifest in decision.apply:
            self.kube.apply(object_path(manifest), manifest)
        for name in decision.delete:
            logger.info("deleting revision Deployment %s", name)
            self.kube.delete(f"/apis/apps/v1/namespaces/{owner.namespace}/deployments/{name}")
        self._route(owner, spec, decision.status, version, now)
        for event in decision.events:
            logger.log(
                logging.WARNING if event.type == "Warning" else logging.INFO,
                "%s: %s",
                event.reason,
                event.message,
            )
            self.post_event(owner, event, now)
        if decision.wake_at is not None:
            self._wake(owner.namespace, owner.name, (decision.wake_at - now).total_seconds(), logger)

    def _observe(
        self,
        owner: manifests.Owner,
        spec: api.ModelDeploymentSpec,
        status: api.ModelDeploymentStatus,
        observations: engine.Observations,
        now: datetime,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> engine.Observations:
        """Take the measurements and the smoke test the engine asks for."""
        wants = engine.wants(spec, status, observations, now)
        measurements: dict[str, dict[str, RawMeasurement]] = {}
        if wants.runs and spec.analysis is not None:
            try:
                config: Any = measure.connection(
                    spec.analysis, owner.namespace, self.prometheus, self.read_secret
                )
            except measure.ConnectionProblem as problem:
                config = problem
            for run in wants.runs:
                stable = status.stable_revision or run.revision
                measurements[run.kind] = measure.measure(
                    config, spec.analysis, owner.namespace, owner.name, run.revision, stable
                )
                logger.info("measured %s analysis of %s", run.kind, run.revision)
        found = None
        if wants.smoke_revision is not None and spec.smoke_test is not None:
            found = smoke.smoke_test(
                self.kube, owner.namespace, wants.smoke_revision, spec.port, spec.smoke_test
            )
        return dataclasses.replace(observations, measurements=measurements, smoke=found)

    def read_secret(self, namespace: str, name: str) -> dict[str, str]:
        found = self.kube.get(f"/api/v1/namespaces/{namespace}/secrets/{name}")
        if found is None:
            raise LookupError("not found")
        return {k: base64.b64decode(v).decode() for k, v in (found.get("data") or {}).items()}

    def _route(
        self,
        owner: manifests.Owner,
        spec: api.ModelDeploymentSpec,
        status: api.ModelDeploymentStatus,
        version: str,
        now: datetime,
    ) -> None:
        """gatewayAPI: write the route's weights, read them back, report it as `TrafficRouted`."""
        switched = status.blue_green is not None and status.blue_green.phase in ("Switched", "Accepted")
        weight = status.canary.weight if status.canary else 100 if switched else 0
        routed = routes.sync(self.kube, owner, spec, weight)
        if routed is None:
            return
        updated = engine.set_condition(status, "TrafficRouted", routed, now, owner.generation)
        patch = merge_patch(api.dump(status), api.dump(updated))
        if patch:
            try:
                self.kube.request(
                    "PATCH",
                    md_path(owner.namespace, owner.name) + "/status",
                    query={"fieldManager": FIELD_MANAGER},
                    body={"metadata": {"resourceVersion": version}, "status": patch},
                    content_type=MERGE,
                )
            except KubeError as err:
                if err.status != 409:
                    raise

    def _wake(
        self, namespace: str, name: str, seconds: float, logger: logging.Logger | logging.LoggerAdapter[Any]
    ) -> None:
        """Reconcile again when a timed step ends (a pause, a scale-down delay), not only at the
        next resync; one timer per object, the earliest wins."""
        key, due = (namespace, name), time.monotonic() + max(seconds, 0.0)
        with self._guard:
            current = self._timers.get(key)
            if current is not None and current[0] <= due and current[1].is_alive():
                return
            if current is not None:
                current[1].cancel()
            timer = threading.Timer(max(seconds, 0.0) + 0.5, self._fire, (namespace, name, logger))
            timer.daemon = True
            self._timers[key] = (due, timer)
        timer.start()

    def _fire(self, namespace: str, name: str, logger: logging.Logger | logging.LoggerAdapter[Any]) -> None:
        with self._guard:
            self._timers.pop((namespace, name), None)
        try:
            self.reconcile(namespace, name, logger)
        except Exception:  # the resync loop retries; a timer must not die loudly
            logger.exception("timed reconcile failed")

    def post_event(self, owner: manifests.Owner, event: engine.Event, now: datetime) -> None:
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.kube.request(
            "POST",
            f"/api/v1/namespaces/{owner.namespace}/events",
            body={
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"generateName": f"{owner.name}.", "namespace": owner.namespace},
                "involvedObject": {
                    "apiVersion": api.API_VERSION,
                    "kind": api.KIND,
                    "name": owner.name,
                    "namespace": owner.namespace,
                    "uid": owner.uid,
                },
                "type": event.type,
                "reason": event.reason,
                "message": event.message[:1024],
                "source": {"component": COMPONENT},
                "reportingComponent": COMPONENT,
                "reportingInstance": self._instance[:128],
                "firstTimestamp": stamp,
                "lastTimestamp": stamp,
                "count": 1,
            },
        )
