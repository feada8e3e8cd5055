"""Queues and workers that deliver notifications, off the reconcile path.

Each target of each ModelDeployment (and each operator-wide target for each ModelDeployment) has
a lane: a bounded FIFO queue and, while it has work, one worker thread. A pass only puts
notifications in queues (never waits: a full queue drops the new notification and counts it),
so a target that is down or hangs can slow only its own lane. A worker sends each notification
in order, with `timeout` per attempt and up to `maxAttempts` attempts, waiting
`core.notifications.backoff` between them; it then records the outcome (`Delivery`), counts it
and, when the target's outcome changed, asks for a reconcile pass, which shows it as the
`NotificationsDelivered` condition. A worker with nothing to do for `IDLE_SECONDS` ends.

Queued notifications live in memory only: an operator that stops loses those not yet sent
(docs/notifications.md, delivery guarantees).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelship import api, metrics
from modelship.core import notifications
from modelship.core.manifests import Owner
from modelship.core.notifications import Delivery, Notification
from modelship.notify import webhook

log = logging.getLogger("modelship.notify")

QUEUE_SIZE = 64  # notifications waiting per lane; a transition makes at most a few
IDLE_SECONDS = 30.0
DEFAULTS_PREFIX = "operator/"  # how an operator-wide target is named beside the spec's own

ReadSecret = Callable[[str, str], dict[str, str]]  # (namespace, name) -> decoded data; LookupError
Send = Callable[[str, bytes, float], None]  # (url, body, timeout); webhook.Failed


@dataclass(frozen=True)
class Target:
    key: str  # its name in the condition, the metrics and the logs: never its URL
    spec: api.NotificationTarget
    namespace: str  # where its Secret is


@dataclass(frozen=True)
class _Job:
    owner: Owner
    target: Target
    notification: Notification


@dataclass
class _Lane:
    queue: queue.Queue[_Job] = field(default_factory=lambda: queue.Queue(QUEUE_SIZE))
    worker: threading.Thread | None = None


class Notifier:
    def __init__(
        self,
        read_secret: ReadSecret,
        defaults: Sequence[api.NotificationTarget] = (),
        defaults_namespace: str | None = None,
        on_change: Callable[[str, str], None] | None = None,
        send: Send = webhook.post,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`defaults`: the operator-wide targets, whose Secrets are in `defaults_namespace` (the
        operator's own); `on_change(namespace, name)`: a target's outcome changed."""
        if defaults and not defaults_namespace:
            raise ValueError(
                "operator-wide notification targets need the operator's namespace ($POD_NAMESPACE)"
            )
        self._read_secret = read_secret
        self._defaults = tuple(defaults)
        self._defaults_namespace = defaults_namespace or ""
        self._on_change = on_change
        self._send = send
        self._sleep = sleep
        self._lock = threading.Lock()
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._results: dict[tuple[str, str], dict[str, Delivery]] = {}

    def targets(self, namespace: str, spec: api.ModelDeploymentSpec) -> list[Target]:
        own = [Target(t.name, t, namespace) for t in spec.notifications or []]
        shared = [Target(DEFAULTS_PREFIX + t.name, t, self._defaults_namespace) for t in self._defaults]
        return own + shared

    def submit(
        self,
        owner: Owner,
        spec: api.ModelDeploymentSpec,
        status: api.ModelDeploymentStatus,
        posted: Sequence[notifications.Transition],
    ) -> None:
        """Queue the notifications for the Events just `posted` (`status`: written with them)."""
        targets = self.targets(owner.namespace, spec)
        if not targets or not posted:
            return
        for notification in notifications.notifications(owner, posted, status):
            for target in targets:
                if notifications.wants(target.spec, notification.trigger):
                    self._enqueue(_Job(owner, target, notification))

    def results(self, owner: Owner, spec: api.ModelDeploymentSpec) -> dict[str, Delivery]:
        """The last outcome for each target the spec still has (the engine's observation)."""
        keys = {t.key for t in self.targets(owner.namespace, spec)}
        with self._lock:
            seen = self._results.get((owner.namespace, owner.name), {})
            return {k: v for k, v in seen.items() if k in keys}

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._results.pop((namespace, name), None)

    def _enqueue(self, job: _Job) -> None:
        key = (job.owner.namespace, job.owner.name, job.target.key)
        with self._lock:
            lane = self._lanes.setdefault(key, _Lane())
            try:
                lane.queue.put_nowait(job)
            except queue.Full:
                log.warning(
                    "%s/%s: notification %s to target %s dropped: %d are waiting for it",
                    *(
                        job.owner.namespace,
                        job.owner.name,
                        job.notification.trigger,
                        job.target.key,
                        QUEUE_SIZE,
                    ),
                )
                metrics.NOTIFICATIONS.labels(*key, "dropped").inc()
                return
            if lane.worker is None:
                lane.worker = threading.Thread(
                    target=self._work, args=(key, lane), name=f"notify-{job.target.key}", daemon=True
                )
                lane.worker.start()

    def _work(self, key: tuple[str, str, str], lane: _Lane) -> None:
        while True:
            try:
                job = lane.queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:  # `_enqueue` starts a new worker once this one is gone
                    if lane.queue.empty():
                        lane.worker = None
                        self._lanes.pop(key, None)
                        return
                continue
            try:
                self._record(job, self.deliver(job))
            except Exception:  # a worker must go on with the next one
                log.exception("notification to target %s failed unexpectedly", job.target.key)

    def deliver(self, job: _Job) -> Delivery:
        """Send one notification: its attempts, with backoff between them."""
        target, notification = job.target, job.notification
        trigger = notification.trigger
        try:
            body = json.dumps(notifications.render(target.spec, notification)).encode()
        except notifications.TemplateError as err:
            return Delivery(False, trigger, 0, f"spec.notifications[{target.spec.name}].{err}")
        timeout = api.parse_duration(target.spec.timeout).total_seconds()
        limit = target.spec.max_attempts
        where = f"{job.owner.namespace}/{job.owner.name}"
        for attempt in range(1, limit + 1):
            url = ""
            try:
                url = self._url(target)
                self._send(url, body, timeout)
                log.info("%s: notification %s sent to target %s", where, trigger, target.key)
                return Delivery(True, trigger, attempt)
            except webhook.Failed as failed:
                error = failed.reason.replace(url, "<url>") if url else failed.reason
                log.warning(
                    "%s: notification %s to target %s: attempt %d/%d failed: %s",
                    *(where, trigger, target.key, attempt, limit, error),
                )
                if attempt == limit or not notifications.retryable(failed.status):
                    return Delivery(False, trigger, attempt, error)
                self._sleep(notifications.backoff(attempt))
        raise AssertionError("unreachable: the last attempt returns")

    def _url(self, target: Target) -> str:
        ref = target.spec.url_from.secret_key_ref
        try:
            data = self._read_secret(target.namespace, ref.name)
        except Exception as err:  # missing, or no RBAC: the error names the Secret, not its contents
            raise webhook.Failed(None, f"Secret {target.namespace}/{ref.name}: {_short(err)}") from None
        url = data.get(ref.key, "").strip()
        if not url:
            raise webhook.Failed(None, f"Secret {target.namespace}/{ref.name} has no key {ref.key!r}")
        return url

    def _record(self, job: _Job, delivery: Delivery) -> None:
        owner = (job.owner.namespace, job.owner.name)
        with self._lock:
            seen = self._results.setdefault(owner, {})
            before = seen.get(job.target.key)
            seen[job.target.key] = delivery
        result = "delivered" if delivery.ok else "failed"
        metrics.NOTIFICATIONS.labels(*owner, job.target.key, result).inc()
        changed = before is None or before.ok != delivery.ok or not delivery.ok
        if changed and self._on_change is not None:
            self._on_change(*owner)


def _short(err: Exception) -> str:
    text = str(err) or type(err).__name__
    return text if len(text) <= 200 else text[:200] + "..."
