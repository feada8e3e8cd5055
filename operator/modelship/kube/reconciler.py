"""The shell around the engine: read the ModelDeployment and what it owns, decide, write.

Every trigger (watch events of the ModelDeployment or of its children, the periodic resync, its
own timers, a notification's outcome) adds the object to `Reconciler.queue` (`kube.workqueue`),
whose workers run its passes, one at a time per object, the most urgent first. `step` is safe
from several threads too: one lock per ModelDeployment serialises the passes, and every pass
re-reads the object so a stale body never overwrites a newer status.

One pass (`step`):
1. read the ModelDeployment, its revision Deployments, the accelerator capacity and, for the
   gatewayAPI router, the HTTPRoute, for the istio router the VirtualService (what its managed
   rule routes is an observation: a weight step completes only once the route shows it);
2. take the measurements, the smoke test and the Jobs the engine asks for (`engine.wants`; the
   Job I/O is `kube.jobs`), list the Jobs the ModelDeployment owns, then decide;
3. write the status, guarded by the resourceVersion read in 1 (a change meanwhile, such as a
   `modelship promote`, drops the pass: its own watch event starts the next one);
4. carry out the Decision's writes in their order (server-side apply, deletion, the route's
   weights, stopping Jobs that no longer belong to the rollout): the engine ordered them so that
   a crash between any two leaves users on ready pods;
5. post the events and clear their record from the status, and say when to decide again. The
   transitions a post created are notified (`modelship.notify`: queued, sent by other threads).
   While spec changes wait for a worker, the events stay recorded instead: the pass the status
   write triggers posts them in 1, and the worker is free for the spec changes sooner.

Events survive a crash (`modelship.core.engine.events`): the status written in 3 records the
pass's transition Events, each under its own name, and the pass clears that record in 5 once it
has posted them. A pass that finds a record left (the operator died, or a write failed, before
the clear) posts it right after reading it in 1, before it decides; an Event posted before the
crash is refused as AlreadyExists, so each is posted once. An Event the API server refuses for
good (RBAC, validation) is logged and dropped, so it cannot hold up the rollout; any other
failure stops the pass with the record kept.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from modelship import api, metrics
from modelship.analysis import measure
from modelship.core import engine, evaluation, experiment, manifests
from modelship.kube import applied, cache, jobs, routes, skips, smoke, wakeups, workqueue
from modelship.kube.feedbackkey import FeedbackKeys
from modelship.kube.observe import observe_deployments, observe_devices, observe_services
from modelship.kube.storage import (
    EVENTS_API,
    Conflict,
    KubeError,
    Manifest,
    NotFound,
    Storage,
    deployments_path,
    md_path,
    merge_patch,
    object_path,
    series_events_path,
    service_path,
)
from modelship.logs import Logger, object_logger
from modelship.notify.delivery import Notifier

REPORTING_CONTROLLER = "modelship.io/operator"  # an Event's reportingController
ACTION = "Reconcile"  # what the operator was doing when it posted an Event
# After writing new weights, read the route back this soon: the read-back completes the step.
ROUTE_READBACK_SECONDS = 0.2
CLEAR_ATTEMPTS = 3  # tries at removing a posted Event record from an object that keeps changing
TIMER_SLACK_SECONDS = 0.02
# The kinds the watch cache holds (`handlers`): a write of one of them is followed there.
CACHED_KINDS = frozenset({api.KIND, "Deployment", "Service"})
WORKERS = 8  # the work queue's threads: passes at once, whatever triggered them
# Of them, kept for spec changes: a user's change starts at once amid a burst of rollouts.
KEPT_FOR_SPEC = 1
# Threads that may use the API client at once: the passes, the resync loop's reads, kopf's sync
# handlers (`handlers.SYNC_WORKERS`) and a notification target's Secret read; its connection pool
# is this large, so no burst opens and drops connections ("Connection pool is full").
API_CONNECTIONS = WORKERS + 4


def utcnow() -> datetime:
    return datetime.now(UTC)


class Reconciler:
    def __init__(
        self,
        storage: Storage,
        clock: Callable[[], datetime] = utcnow,
        prometheus: measure.Defaults | None = None,
        notifications: Sequence[api.NotificationTarget] = (),
        owns: Callable[[str], bool] = lambda namespace: True,
    ) -> None:
        """`notifications`: the operator-wide targets, with their Secrets in the operator's
        namespace (`prometheus.namespace`). `owns`: whether a namespace is this operator's (its
        shard's); an object in one it no longer owns is forgotten after its pass."""
        self.storage = storage
        self.clock = clock
        self.prometheus = prometheus or measure.Defaults()
        self.notifier = Notifier(
            storage.read_secret, notifications, self.prometheus.namespace, on_change=self._notified
        )
        self._owns = owns
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self.queue: workqueue.WorkQueue[tuple[str, str]] = workqueue.WorkQueue(
            self._run, WORKERS, kept_for_spec=KEPT_FOR_SPEC
        )
        self._wakeups: wakeups.Wakeups[tuple[str, str]] = wakeups.Wakeups(
            lambda key: self.queue.add(key, workqueue.Priority.TIMER)
        )
        self._guard = threading.Lock()
        self._instance = socket.gethostname()
        self._feedback_keys = FeedbackKeys(self.storage)
        self._scrapes = measure.ScrapeReader(time.monotonic)
        # (namespace, ModelDeployment, Event name) -> the count of that Event's series
        self._series: dict[tuple[str, str, str], int] = {}
        # Objects whose last Jobs list found none: no Job can be theirs until a pass that wants
        # one (a run, a load test) creates it, so passes that want none need not list.
        self._jobless: set[tuple[str, str]] = set()
        # The last apply of each child; the handlers feed it the watch's resourceVersions (`saw`).
        self.applied = applied.Applied()
        # What the watch delivered (fed by the handlers): a pass's reads; and the resync passes
        # that may be left out because none of it changed.
        self.cache = cache.Cache(manifests.MODEL_LABEL)
        self.skips = skips.Skips()

    def _lock(self, namespace: str, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault((namespace, name), threading.Lock())

    def forget(self, namespace: str, name: str) -> None:
        """The object is gone, or no longer ours: nothing of it stays (its queued pass, its timer,
        its metric series)."""
        self.queue.discard((namespace, name))
        metrics.forget(namespace, name)
        with self._guard:
            self._locks.pop((namespace, name), None)
            for key in list(self._series):  # a snapshot: other passes add series meanwhile
                if key[:2] == (namespace, name):
                    self._series.pop(key, None)
        self.notifier.forget(namespace, name)
        self.applied.forget((namespace, name))
        self.skips.forget((namespace, name))
        self._jobless.discard((namespace, name))
        self._wakeups.cancel((namespace, name))

    def _run(self, key: tuple[str, str], resync: bool) -> None:
        """The work queue's pass of `key`, and a timer for the next one when the pass asked for it.
        `resync`: the periodic safety net's trigger, left out while nothing the object's last pass
        read has changed (`skips`)."""
        namespace, name = key
        logger = object_logger(namespace, name)
        try:
            wake = self.step(namespace, name, logger, resync)
            if wake is not None:
                self._wake(namespace, name, wake, logger)
        except Exception:  # the resync retries; a worker must not die loudly
            logger.exception("resync failed" if resync else "reconcile failed")
        if not self._owns(namespace):  # sharded: it left the shard during the pass
            self.forget(namespace, name)

    def step(self, namespace: str, name: str, logger: Logger, resync: bool = False) -> float | None:
        """One pass; in how many seconds it wants the next one (None: at the next trigger)."""
        key = (namespace, name)
        with self._lock(namespace, name):
            inputs = self._inputs(namespace, name)
            if resync and inputs is not None and self.skips.skip(key, inputs):
                metrics.SKIPPED_PASSES.inc()
                return None
            self.skips.running(key)
            # A resync pass that runs reads the API: the safety net also for what the watch may
            # have missed (a deletion while it was down or paused).
            cached = not resync
            body = self._read(md_path(namespace, name), cached)
            if body is None or body["metadata"].get("deletionTimestamp"):
                return None  # gone or going: the garbage collector removes what it owned
            with metrics.RECONCILE_SECONDS.time(), metrics.IN_FLIGHT.track_inprogress():
                wake, alone = self._pass(body, logger, cached)
            self.skips.passed(key, inputs if alone and wake is None else None)
            return wake

    def _inputs(self, namespace: str, name: str) -> str | None:
        """The digest of what a pass reads from the watch cache; None when the cache cannot say."""
        paths = (md_path(namespace), deployments_path(namespace), service_path(namespace))
        versions = self.cache.versions(paths, name)
        if versions is None or md_path(namespace, name) not in (path for path, _ in versions):
            return None
        return skips.digest(versions)

    def _read(self, path: str, cached: bool) -> Manifest | None:
        """The object from the watch cache when it can answer (and `cached`), else from the API."""
        known, obj = self.cache.get(path) if cached else (False, None)
        return obj if known else self.storage.get(path)

    def _children(self, collection: str, name: str, cached: bool) -> list[Manifest] | None:
        """The ModelDeployment's objects in `collection` from the watch cache; None: list them."""
        return self.cache.items(collection, name) if cached else None

    def _pass(self, body: dict[str, Any], logger: Logger, cached: bool) -> tuple[float | None, bool]:
        """In how many seconds the pass wants the next one, and whether it read nothing but the
        watch cache's objects (no route, node capacity or Job: a resync may skip it). `cached`:
        its Deployments and Services from the watch cache when it can answer."""
        meta = body["metadata"]
        owner = manifests.Owner(meta["name"], meta["namespace"], meta["uid"], meta.get("generation", 1))
        spec = api.ModelDeploymentSpec.model_validate(body["spec"])
        raw_status = body.get("status") or {}
        status = api.read_status(raw_status, spec)
        left = engine.events.left(status)
        if left:  # before anything new
            logger.info("posting %d Event(s) recorded by a pass that stopped early", len(left))
            self._post(owner, spec, status, left, self.clock(), logger)

        route = routes.read(self.storage, owner, spec)
        devices = observe_devices(self.storage, owner, spec)
        listed = self._children(deployments_path(owner.namespace), owner.name, cached)
        observed = engine.Observations(
            owner,
            observe_deployments(self.storage, owner, spec, listed),
            devices=devices,
            route=route.observation if route is not None else None,
            resource_version=meta["resourceVersion"],
            notifications=self.notifier.results(owner, spec),
            services=observe_services(
                self.storage, owner, self._children(service_path(owner.namespace), owner.name, cached)
            ),
        )
        clock = self.clock()
        # Kubernetes timestamps have second precision; deciding on whole seconds makes a status
        # read back from the API compare equal to the one we wrote.
        now = clock.replace(microsecond=0)
        observations = self._observe(owner, spec, status, observed, now, clock, logger, cached)
        decision = engine.decide(spec, status, observations, now)

        # Status first, with the resourceVersion we decided on: a manual command that patched
        # the status meanwhile wins, and this pass is dropped before it writes anything else.
        # The patch is against the status as stored, so fields the model no longer has (a
        # status written by an older modelship) are removed. It records this pass's transition
        # Events (status.pendingEvents), which `_clear` removes once they are posted.
        patch = merge_patch(raw_status, api.dump(decision.status))
        read: str = meta["resourceVersion"]
        version = self._patch_status(owner, patch, read) if patch else read
        if version is None:
            logger.info("the ModelDeployment changed during this pass; deciding again on the next one")
            return None, False
        metrics.record_pass(owner.namespace, owner.name, status, decision.status, decision.rolled_back)
        self._feedback_keys.ensure(owner, logger)  # before the pods that mount it
        moved = self._write(owner, spec, decision.writes, route, logger)
        for event in decision.events:
            level = logging.WARNING if event.type == "Warning" else logging.INFO
            logger.log(level, "%s: %s", event.reason, event.message)
        if engine.events.all_recorded(decision.events, decision.status) and self._spec_waiting():
            # Left recorded: the pass its status write triggers posts and clears them first.
            logger.debug("%d Event(s) left to the next pass: spec changes wait", len(decision.events))
        else:
            self._post(owner, spec, decision.status, decision.events, now, logger)
            self._clear(owner, decision.status, version, logger)
        # From the clock, not `now` (whole seconds): a probe is timed to just after a scrape.
        wake = (decision.wake_at - clock).total_seconds() if decision.wake_at is not None else None
        if moved:  # new weights: read them back soon, the read-back completes the step
            wake = ROUTE_READBACK_SECONDS if wake is None else min(wake, ROUTE_READBACK_SECONDS)
        return wake, route is None and devices is None and not observations.jobs

    def _spec_waiting(self) -> bool:
        """Whether spec changes wait for a worker (a burst of rollouts): a pass then leaves posting
        its Events to the object's next pass (`engine.events`), so they get one sooner."""
        return self.queue.depth()[workqueue.Priority.SPEC] > 0

    def _patch_status(self, owner: manifests.Owner, patch: dict[str, Any], version: str) -> str | None:
        """`storage.patch_md` of the status; the cache waits for the watch to show the write."""
        written = self.storage.patch_md(owner.namespace, owner.name, "status", patch, version)
        if written is not None:
            self.cache.wrote(md_path(owner.namespace, owner.name), owner.name, written)
        return written

    def _write(
        self,
        owner: manifests.Owner,
        spec: api.ModelDeploymentSpec,
        writes: tuple[engine.Write, ...],
        route: routes.Read | None,
        logger: Logger,
    ) -> bool:
        """The Decision's writes, in its order; whether new route weights were written."""
        moved = False
        for write in writes:
            if isinstance(write, engine.Apply):
                self._apply(owner, write.manifest)
            elif isinstance(write, engine.Delete):
                logger.info("deleting revision Deployment %s", write.name)
                self._delete(owner, deployments_path(owner.namespace, write.name))
            elif isinstance(write, engine.DeleteService):
                logger.info("deleting Service %s: no route sends to it any more", write.name)
                self._delete(owner, service_path(owner.namespace, write.name))
            elif isinstance(write, engine.StopJob):
                jobs.stop(self.storage, owner.namespace, write.name, logger)
            elif route is not None and routes.write(self.storage, owner, spec, write, route):
                moved = moved or write.moves(route.observation)
        return moved

    def _apply(self, owner: manifests.Owner, manifest: dict[str, Any]) -> None:
        """Server-side apply, left out when the object is still as the last apply left it."""
        key, path, wanted = (owner.namespace, owner.name), object_path(manifest), applied.digest(manifest)
        if self.applied.unchanged(key, path, wanted):
            metrics.SKIPPED.labels(manifest["kind"]).inc()
            return
        written = self.storage.apply(manifest)
        version = str(written["metadata"]["resourceVersion"])
        self.applied.applied(key, path, wanted, version)
        if manifest["kind"] in CACHED_KINDS:
            self.cache.wrote(path, owner.name, version)

    def _delete(self, owner: manifests.Owner, path: str) -> None:
        """Delete a child the cache holds; until the watch shows it gone, passes ask the API (one
        that was gone already is dropped at once: no watch event will say so)."""
        if self.storage.delete(path):
            self.cache.wrote(path, owner.name, None)
        else:
            self.cache.drop(path)

    def _observe(
        self,
        owner: manifests.Owner,
        spec: api.ModelDeploymentSpec,
        status: api.ModelDeploymentStatus,
        observations: engine.Observations,
        now: datetime,
        clock: datetime,
        logger: Logger,
        cached: bool,
    ) -> engine.Observations:
        """Take the measurements and the smoke test the engine asks for (`clock`: `now` to the
        microsecond, for timing probes), and list the Jobs unless `cached` (not a resync's whole
        pass: the safety net always lists) and none can be there (`_jobless`)."""
        config: Any = None
        running = [r for r in status.analysis or [] if r.phase == "Running" and r.revision == status.rolling]
        # An experiment without spec.analysis asks the operator's default Prometheus.
        settings = spec.analysis or next(
            (experiment.analysis_of(spec, r) for r in running if r.kind == experiment.KIND), None
        )
        if running and settings is not None:
            try:
                config = measure.connection(
                    settings, owner.namespace, self.prometheus, self.storage.read_secret
                )
            except measure.ConnectionProblem as problem:
                config = problem
            scrape = self._scrapes.read(config, owner.namespace, running[0].revision)
            if scrape is not None:
                scrape = dataclasses.replace(scrape, seen_at=clock)
            observations = dataclasses.replace(observations, scrape=scrape)
        wants = engine.wants(spec, status, observations, now)
        measurements = jobs.evaluations(self.storage, owner, spec, wants.runs, logger)
        for run in (r for r in wants.runs if r.kind == experiment.KIND):
            trial = experiment.step_of(spec, run.step)
            if trial is not None:
                # Against the challenger the run was started with, or stable.
                stable = run.baseline or status.stable_revision or run.revision
                metrics = [m.name for m in trial.metrics]
                window = experiment.window(run, now)
                measurements[run.kind] = measure.experiment(
                    config, metrics, owner.namespace, owner.name, run.revision, stable, window
                )
                logger.info("measured the experiment of %s against %s over %s", run.revision, stable, window)
        if wants.runs and spec.analysis is not None:
            for run in (r for r in wants.runs if r.kind not in (evaluation.KIND, experiment.KIND)):
                stable = status.stable_revision or run.revision
                # A round with job metrics waits for their Jobs; it is never a probe's.
                by_jobs = jobs.metric_round(self.storage, owner, spec.analysis, run, stable, now)
                if by_jobs is None:
                    continue
                measurements[run.kind] = {
                    **measure.measure(
                        config,
                        spec.analysis,
                        owner.namespace,
                        owner.name,
                        run.revision,
                        stable,
                        self.storage.read_secret,
                    ),
                    **by_jobs,
                }
                logger.info("measured %s analysis of %s", run.kind, run.revision)
        found = None
        if wants.smoke_revision is not None and spec.smoke_test is not None:
            found = smoke.smoke_test(
                self.storage, owner.namespace, wants.smoke_revision, spec.port, spec.smoke_test
            )
        observations = dataclasses.replace(observations, measurements=measurements, smoke=found)
        key = (owner.namespace, owner.name)
        if cached and key in self._jobless and not wants.runs and wants.load_job is None:
            return observations  # no Job can be there: the last list found none, none was made
        # Listed last, after the reads above: a Job they saw finish is seen finished here too.
        seen = jobs.owned(self.storage, owner, jobs.load_test(self.storage, wants.load_job, logger), logger)
        (self._jobless.discard if seen else self._jobless.add)(key)
        return dataclasses.replace(observations, jobs=seen)

    def _wake(self, namespace: str, name: str, seconds: float, logger: Logger) -> None:
        """Reconcile again when a timed step ends (a pause, a scale-down delay) or new weights
        should show, not only at the next resync; one wakeup per object, the earliest wins. Just
        after the moment: the pass then decides on a `now` (whole seconds) that has reached it."""
        due = time.monotonic() + max(seconds, 0.0) + TIMER_SLACK_SECONDS
        self._wakeups.at((namespace, name), due)

    def _post(
        self,
        owner: manifests.Owner,
        spec: api.ModelDeploymentSpec,
        status: api.ModelDeploymentStatus,
        events: tuple[engine.Event, ...],
        now: datetime,
        logger: Logger,
    ) -> None:
        """Post `events` in their order, and queue the notifications of the transitions this post
        created (`status`: the one written with them); one refused as AlreadyExists was created,
        and notified, before the operator stopped. One the API server refuses for good (a 4xx: RBAC,
        validation, a namespace being deleted) is logged and dropped: it must not hold up the
        rollout, nor be retried forever. Any other failure raises, and the record in the status is
        kept (the Events posted before it are notified)."""
        created: list[engine.Event] = []
        try:
            for event in events:
                try:
                    if self.post_event(owner, event, now):
                        created.append(event)
                except KubeError as err:
                    if not 400 <= err.status < 500 or err.status == 429:
                        raise
                    logger.warning("the API server refused Event %s (%s): %s", event.reason, event.name, err)
        finally:
            self.notifier.submit(owner, spec, status, created)

    def _notified(self, namespace: str, name: str) -> None:
        """A notification target's outcome changed: a pass shows it (NotificationsDelivered)."""
        self.queue.add((namespace, name), workqueue.Priority.EVENT)

    def _clear(
        self, owner: manifests.Owner, status: api.ModelDeploymentStatus, version: str, logger: Logger
    ) -> None:
        """Remove the record of the Events this pass posted (status.pendingEvents), only if it has
        one, guarded by the version this pass wrote. After a change meanwhile (a scale, a kubectl
        annotate) the record is removed from the new version if it is still the one posted: left,
        nothing would remove it until the next pass, and a steady object may have none for long.
        A new record meanwhile (another pass's) stays: its pass clears it."""
        patch = merge_patch(api.dump(status), api.dump(engine.events.posted(status)))
        if not patch:
            return
        record = api.dump(status).get("pendingEvents")
        for _ in range(CLEAR_ATTEMPTS):
            if self._patch_status(owner, patch, version) is not None:
                return
            body = self.storage.get(md_path(owner.namespace, owner.name))
            if body is None or (body.get("status") or {}).get("pendingEvents") != record:
                return
            version = body["metadata"]["resourceVersion"]
        logger.debug("the ModelDeployment kept changing; the next pass clears its posted Events")

    def post_event(self, owner: manifests.Owner, event: engine.Event, now: datetime) -> bool:
        """Post `event` as an events.k8s.io/v1 Event: a transition is a new object each time, named
        by the engine (`event.name`, at `event.at`); a second post of it is refused as AlreadyExists,
        which means it is there. A repeat (`event.series`) is one object per series, reason and type,
        whose `series.count` and `lastObservedTime` each repeat bumps (as client-go's event recorder
        does). Whether this call created a transition's Event (False: it was there, or a repeat)."""
        body = self._event(owner, event, event.at or now)
        if event.series is None:
            # Named `<name>.<hex>` as client-go's recorder names them (events.k8s.io refuses a
            # generateName that does not end alphanumeric); an unnamed one gets a name from the clock.
            body["metadata"]["name"] = event.name or f"{owner.name}.{time.time_ns():x}"
            try:
                self.storage.post_event(owner.namespace, body)
            except Conflict:  # AlreadyExists: posted before the operator stopped
                return False
            return True
        # A name from the series' identity, so a restarted (or newly elected) operator finds it.
        digest = hashlib.sha256(
            f"{owner.uid}/{event.reason}/{event.type}/{event.series}".encode()
        ).hexdigest()
        name = f"{owner.name}.{digest[:16]}"
        key = (owner.namespace, owner.name, name)
        count = self._series.get(key)
        if count is None:
            found = self.storage.get(series_events_path(owner.namespace, name))
            if found is None:
                body["metadata"]["name"] = name
                try:
                    self.storage.post_event(owner.namespace, body)
                    self._series[key] = 1
                    return False
                except Conflict:  # made meanwhile (by the replica that led before us)
                    found = self.storage.get(series_events_path(owner.namespace, name)) or {}
            count = int((found.get("series") or {}).get("count") or 1)
        series = {"count": count + 1, "lastObservedTime": _micro(now)}
        try:
            self.storage.patch_event(owner.namespace, name, {"series": series})
        except NotFound:  # expired (the API server's event TTL): the series starts again
            self._series.pop(key, None)
            return self.post_event(owner, event, now)
        self._series[key] = count + 1
        return False

    def _event(self, owner: manifests.Owner, event: engine.Event, now: datetime) -> dict[str, Any]:
        return {
            "apiVersion": EVENTS_API,
            "kind": "Event",
            "metadata": {"namespace": owner.namespace},
            "regarding": {
                "apiVersion": api.API_VERSION,
                "kind": api.KIND,
                "name": owner.name,
                "namespace": owner.namespace,
                "uid": owner.uid,
            },
            "eventTime": _micro(now),
            "type": event.type,
            "reason": event.reason,
            "action": ACTION,
            "note": event.message[:1024],
            "reportingController": REPORTING_CONTROLLER,
            "reportingInstance": self._instance[:128],
        }


def _micro(moment: datetime) -> str:
    """An events.k8s.io MicroTime."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
