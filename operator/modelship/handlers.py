"""kopf wiring, kept thin: every trigger adds the ModelDeployment to the reconciler's work queue
(`kube.workqueue`) and returns; the queue's workers run the passes, the most urgent first.

Triggers (level-triggered reconciliation), most urgent first:
- a ModelDeployment's watch event with a spec change no pass has acted on yet (its generation is
  above `status.observedGeneration`);
- (the reconciler's own timers, `kube.wakeups`;)
- other watch events of ModelDeployments, and of the Deployments and Services they own
  (so a deleted or edited child is restored within seconds), and of those Services'
  EndpointSlices (a weight step waits for them);
- a resync loop that queues every ModelDeployment every `resync_seconds` and waits for their
  passes (left out for one whose inputs have not changed since its last pass: `kube.skips`).

The event handlers are async: they only feed the cache and the queue, on kopf's event loop, so no
event waits for a thread while passes run.

The watch cache (`kube.cache`): kopf indices of the ModelDeployments, Deployments and Services
feed it each object as the watch delivers it, so a pass reads them without a request. kopf calls
no handler before every index has its initial listing, so the first handler call marks the cache
ready; the event handlers take deleted objects out. The indices keep nothing themselves (their
functions return None), and are not limited to the shard: a namespace that joins it is read from
the cache at once. They are async, so they run on kopf's event loop at once rather than wait for
a thread that the passes hold: the cache lags the watch as little as it can.

Sharded (`--shard-selector`): every trigger above is filtered to the namespaces whose labels
match, which a watch of namespaces keeps current; objects elsewhere are never written to (event
handlers make kopf write nothing; those of the cached kinds only feed the cache for them, the
EndpointSlices' `when=` filter keeps kopf from calling for them at all). A namespace that joins
the shard has its ModelDeployments reconciled at once; one that leaves is forgotten.

Why not `@kopf.timer` for the resync: kopf puts a finalizer on every object a timer
serves, so a ModelDeployment (and its namespace) could not be deleted while the
operator is down. Deletion needs no handler at all: ownerReferences let the garbage
collector remove the children. Handlers return nothing, so kopf writes nothing into
`status`; its bookkeeping goes to annotations and it posts no events of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kopf

from modelship import api, heap, metrics, peering
from modelship.analysis.measure import Defaults
from modelship.core import manifests
from modelship.core.shard import Selector, Shard
from modelship.kube.reconciler import Reconciler
from modelship.kube.storage import Storage, md_path, object_path
from modelship.kube.workqueue import Priority, event_priority

log = logging.getLogger("modelship")

# kopf's threads for sync handlers: the namespace watch's (sharded) and the liveness probe.
SYNC_WORKERS = 2


@dataclass
class Runtime:
    """Set by `modelship run` before kopf starts."""

    reconciler: Reconciler | None = None
    namespaces: list[str] = field(default_factory=list)  # empty: cluster-wide
    resync_seconds: float = 30.0
    last_resync: float = field(default_factory=time.monotonic)
    resync_passes: int = 0
    listed: bool = False  # the resync has read the ModelDeployments (or the peering) once
    # HA: the kopf peering this replica takes part in (None: standalone).
    peering: str | None = None
    identity: str = ""
    priority: int = 0
    shard: Shard | None = None  # None: every namespace is ours

    def get(self) -> Reconciler:
        if self.reconciler is None:
            raise RuntimeError("modelship.handlers used before `modelship run` configured it")
        return self.reconciler


RUNTIME = Runtime()


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=api.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=api.GROUP)
    settings.persistence.finalizer = f"{api.GROUP}/finalizer"
    settings.persistence.consistency_timeout = 10
    settings.posting.enabled = False  # the engine's events are the ones users should read
    settings.execution.max_workers = SYNC_WORKERS
    # No scanning of CRDs and namespaces: it needs cluster-wide list/watch on both, and the
    # namespaced install grants nothing cluster-scoped. The CRD must exist at start (Helm
    # installs it first); namespaces are exact names, never globs.
    settings.scanning.disabled = True
    memo["resync"] = asyncio.create_task(_resync_forever())


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    task = memo.get("resync")
    if isinstance(task, asyncio.Task):
        task.cancel()


def _stale_after() -> float:
    return max(3 * RUNTIME.resync_seconds, 60)


def _idle_for() -> float:
    """Seconds since the operator last showed it works: a resync pass ended or, while one waits
    behind a backlog (thousands of ModelDeployments created at once), any queued pass ended."""
    passed = RUNTIME.reconciler.queue.last_ended if RUNTIME.reconciler is not None else 0.0
    return time.monotonic() - max(RUNTIME.last_resync, passed)


@kopf.on.probe(id="resync")
def resync_probe(**_: Any) -> dict[str, Any]:
    """Liveness: fails (HTTP 500) when the resync loop and the work queue have stopped."""
    age = _idle_for()
    if age > _stale_after():
        raise kopf.PermanentError(f"no resync pass and no reconcile for {age:.0f}s")
    return _progress()


def _progress() -> dict[str, Any]:
    return {
        "passes": RUNTIME.resync_passes,
        "secondsSinceLastPass": round(time.monotonic() - RUNTIME.last_resync, 1),
    }


def readiness() -> tuple[bool, dict[str, Any]]:
    """Readiness (the metrics port's /readyz): ready to reconcile. kopf's startup is done, the
    resync has listed the ModelDeployments or, on an HA standby, read the peering object, so the
    credentials, the RBAC and the CRD work, and the operator is live (`resync_probe`). A standby
    is ready: it takes over without a restart, and a rolling update (maxUnavailable 0) waits for
    it. Not the first resync pass's end: behind a large backlog that can take minutes."""
    return RUNTIME.listed and _idle_for() <= _stale_after(), _progress()


def _in_shard(namespace: str | None, **_: Any) -> bool:
    return RUNTIME.shard is None or RUNTIME.shard.owns(namespace or "")


def _reconcile(namespace: str, name: str, priority: Priority = Priority.EVENT) -> None:
    """Queue a pass. Sharded: the reconciler lets go of an object whose namespace left the shard
    while its pass ran, so nothing the pass recorded or scheduled (a series, a wake-up) outlives
    the move."""
    RUNTIME.get().queue.add((namespace, name), priority)


def _let_go(namespace: str, name: str) -> None:
    RUNTIME.get().forget(namespace, name)


def _cached(path: str, body: kopf.Body) -> None:
    # Without managedFields, which no pass reads: most of a Deployment's size.
    meta = {k: v for k, v in body.metadata.items() if k != "managedFields"}
    RUNTIME.get().cache.saw(path, {**body, "metadata": meta})


def _event_seen(path: str, body: kopf.Body, type: str | None) -> None:
    """Any handler call: every index has its initial listing; a deletion leaves the cache."""
    cache = RUNTIME.get().cache
    cache.ready()
    if type == "DELETED":
        cache.gone(path, dict(body))


def _child_path(body: kopf.Body) -> str:
    return object_path({"apiVersion": body["apiVersion"], "kind": body["kind"], "metadata": body.metadata})


@kopf.index(api.GROUP, api.VERSION, api.PLURAL)
async def modeldeployment_index(body: kopf.Body, namespace: str | None, name: str, **_: Any) -> None:
    _cached(md_path(namespace or "", name), body)


@kopf.index("apps", "v1", "deployments", labels={manifests.MODEL_LABEL: kopf.PRESENT})
async def deployment_index(body: kopf.Body, **_: Any) -> None:
    _cached(_child_path(body), body)


@kopf.index("v1", "services", labels={manifests.MODEL_LABEL: kopf.PRESENT})
async def service_index(body: kopf.Body, **_: Any) -> None:
    _cached(_child_path(body), body)


@kopf.on.event(api.GROUP, api.VERSION, api.PLURAL)
async def modeldeployment_event(
    body: kopf.Body, type: str | None, namespace: str | None, name: str, **_: Any
) -> None:
    namespace = namespace or ""
    _event_seen(md_path(namespace, name), body, type)
    if not _in_shard(namespace):
        return
    if type == "DELETED":
        _let_go(namespace, name)
        return
    _reconcile(namespace, name, event_priority(body))


def _reconcile_owner(body: kopf.Body, type: str | None) -> None:
    path = _child_path(body)
    _event_seen(path, body, type)
    if not _in_shard(body.metadata.namespace):
        return
    # What the watch says the child is at now: an apply that would change nothing is left out.
    RUNTIME.get().applied.saw(path, None if type == "DELETED" else body.metadata.get("resourceVersion"))
    for ref in body.metadata.get("ownerReferences", []):
        if ref.get("kind") == api.KIND and ref.get("apiVersion") == api.API_VERSION:
            namespace = body.metadata.namespace or ""
            _reconcile(namespace, ref["name"])


@kopf.on.event("apps", "v1", "deployments", labels={manifests.MODEL_LABEL: kopf.PRESENT})
async def deployment_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    _reconcile_owner(body, type)


@kopf.on.event("v1", "services", labels={manifests.MODEL_LABEL: kopf.PRESENT})
async def service_event(body: kopf.Body, type: str | None, **_: Any) -> None:
    _reconcile_owner(body, type)


@kopf.on.event(
    "discovery.k8s.io", "v1", "endpointslices", labels={manifests.MODEL_LABEL: kopf.PRESENT}, when=_in_shard
)
async def endpointslice_event(body: kopf.Body, **_: Any) -> None:
    # A weight step waits for its Service's slices to list the pods (routing.unserved). Slices
    # are owned by the Service, but carry its labels, which name the ModelDeployment.
    namespace, name = body.metadata.namespace or "", body.metadata.labels[manifests.MODEL_LABEL]
    _reconcile(namespace, name)


def namespace_event(type: str | None, name: str, labels: kopf.Labels, **_: Any) -> None:
    """Sharded only (installed by `install`): a namespace's labels decide which shard owns it."""
    assert RUNTIME.shard is not None
    change = RUNTIME.shard.saw(name, None if type == "DELETED" else dict(labels))
    if change is None:
        return
    log.info("namespace %s %s the shard (%s)", name, change, RUNTIME.shard.selector.text)
    for item in RUNTIME.get().storage.items(md_path(name)):
        # Joined: reconciled at once. Left: another shard's now, nothing of ours acts on it.
        (_reconcile if change == "joined" else _let_go)(name, item["metadata"]["name"])


def _standing_by() -> bool:
    """HA: kopf pauses its own handlers on a standby replica; this loop must pause too."""
    if RUNTIME.peering is None:
        return False
    storage, now = RUNTIME.get().storage, datetime.now(UTC)
    for path in peering.peering_paths(RUNTIME.peering, RUNTIME.namespaces):
        peers = (storage.get(path) or {}).get("status") or {}
        if not peering.is_active(peers, RUNTIME.identity, RUNTIME.priority, now):
            return True
    return False


def _resync_once() -> int:
    """Queue every ModelDeployment at resync priority and wait until their passes have ended (one
    a watch event queued meanwhile is its pass, not a resync's)."""
    reconciler = RUNTIME.get()
    if _standing_by():
        RUNTIME.listed = True
        return 0
    paths = [md_path(ns) for ns in RUNTIME.namespaces] if RUNTIME.namespaces else [md_path(None)]
    keys = [
        (namespace, name)
        for path in paths
        for namespace, name in reconciler.storage.keys(path)
        if _in_shard(namespace)
    ]
    RUNTIME.listed = True
    reconciler.queue.add_all(keys, Priority.RESYNC).wait()
    return len(keys)


async def _resync_forever() -> None:
    while True:
        try:
            started = time.monotonic()
            count = await asyncio.to_thread(_resync_once)
            seconds = time.monotonic() - started
            metrics.RESYNC_SECONDS.observe(seconds)
            heap.trim()  # a pass parses and frees every object it reads
            RUNTIME.last_resync = time.monotonic()
            RUNTIME.resync_passes += 1
            log.info("resync pass %d: %d ModelDeployments in %.2f s", RUNTIME.resync_passes, count, seconds)
        except Exception:
            log.exception("resync pass failed")
        await asyncio.sleep(RUNTIME.resync_seconds)


def install(
    storage: Storage,
    namespaces: list[str],
    resync_seconds: float,
    peering_name: str | None = None,
    identity: str = "",
    priority: int = 0,
    prometheus: Defaults | None = None,
    notifications: list[api.NotificationTarget] | None = None,
    shard_selector: Selector | None = None,
) -> None:
    RUNTIME.reconciler = Reconciler(
        storage, prometheus=prometheus, notifications=notifications or (), owns=lambda ns: _in_shard(ns)
    )
    RUNTIME.namespaces = namespaces
    RUNTIME.resync_seconds = resync_seconds
    RUNTIME.peering, RUNTIME.identity, RUNTIME.priority = peering_name, identity, priority
    RUNTIME.shard = Shard(shard_selector) if shard_selector is not None else None
    if RUNTIME.shard is not None:  # the namespace watch needs cluster-wide rights: only when sharded
        kopf.on.event("v1", "namespaces")(namespace_event)
