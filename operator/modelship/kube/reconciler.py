"""The shell around the engine: read the ModelDeployment and what it owns, decide, apply.

`Reconciler.reconcile(namespace, name)` is safe to call from any trigger (watch
events of the ModelDeployment or of its children, the periodic resync) and from
several threads: one lock per ModelDeployment serialises the passes, and every pass
re-reads the object so a stale body never overwrites a newer status.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from modelship import api, engine, manifests, metrics
from modelship.kube.client import Kube

COMPONENT = "modelship"


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
    )


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


class Reconciler:
    def __init__(self, kube: Kube, clock: Callable[[], datetime] = utcnow) -> None:
        self.kube = kube
        self.clock = clock
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._guard = threading.Lock()
        self._instance = socket.gethostname()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        with self._guard:
            self._locks.pop((namespace, name), None)

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
        status = api.ModelDeploymentStatus.model_validate(body.get("status") or {})

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
        decision = engine.decide(spec, status, engine.Observations(owner, deployments), now)
        metrics.record_pass(owner.namespace, owner.name, status, decision.status)

        for manifest in decision.apply:
            self.kube.apply(object_path(manifest), manifest)
        for name in decision.delete:
            logger.info("deleting revision Deployment %s", name)
            self.kube.delete(f"/apis/apps/v1/namespaces/{owner.namespace}/deployments/{name}")
        new_status = api.dump(decision.status)
        if new_status != api.dump(status):
            self.kube.apply(
                md_path(owner.namespace, owner.name) + "/status",
                {
                    "apiVersion": api.API_VERSION,
                    "kind": api.KIND,
                    "metadata": {"name": owner.name, "namespace": owner.namespace},
                    "status": new_status,
                },
            )
        for event in decision.events:
            logger.log(
                logging.WARNING if event.type == "Warning" else logging.INFO,
                "%s: %s",
                event.reason,
                event.message,
            )
            self.post_event(owner, event, now)

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
