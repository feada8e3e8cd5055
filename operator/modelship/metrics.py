"""The operator's own Prometheus metrics, served on `--metrics-port`.

Names and labels are documented in docs/metrics.md ("The operator's metrics"); a
test keeps the two in step. Everything is recorded from the reconciler, after each
pass, from the status it wrote, so the metrics say what the API says.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any, get_args
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
    make_wsgi_app,
)

from modelship import api

REGISTRY = CollectorRegistry(auto_describe=True)
# prometheus_client's standard process and garbage-collector metrics (process_*, python_gc_*): the
# operator's CPU seconds and resident memory from inside, and how often Python's collector walks
# every object the watch cache and kopf hold (generation 2).
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

ROLLOUTS = Gauge(
    "modelship_rollouts",
    "ModelDeployments by phase.",
    ["phase"],
    registry=REGISTRY,
)
CANARY_WEIGHT = Gauge(
    "modelship_canary_weight",
    "Share of traffic (0-100) the canary revision receives.",
    ["namespace", "name"],
    registry=REGISTRY,
)
# The step's number beside the real share: with the service router they differ (1 replica: 50%).
CANARY_REQUESTED_WEIGHT = Gauge(
    "modelship_canary_requested_weight",
    "Share of traffic (0-100) the canary steps ask for the canary revision.",
    ["namespace", "name"],
    registry=REGISTRY,
)
ANALYSIS_VERDICTS = Counter(
    "modelship_analysis_verdicts_total",
    "Analysis measurements by metric and verdict (Successful, Failed, Inconclusive, Error).",
    ["namespace", "name", "metric", "verdict"],
    registry=REGISTRY,
)
RECONCILE_SECONDS = Histogram(
    "modelship_reconcile_duration_seconds",
    "Time of one reconcile pass of one ModelDeployment.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
ROLLBACKS = Counter(
    "modelship_rollbacks_total",
    "Rollbacks of a canary or preview to the stable revision, by reason.",
    ["namespace", "name", "reason"],
    registry=REGISTRY,
)
# The operator's own load (docs/scaling.md says what to watch).
IN_FLIGHT = Gauge(
    "modelship_reconciles_in_flight",
    "Reconcile passes running now (from watch events, timed passes and the resync loop).",
    registry=REGISTRY,
)
RESYNC_SECONDS = Histogram(
    "modelship_resync_pass_duration_seconds",
    "Time of one resync pass over every ModelDeployment the operator watches.",
    buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge(
    "modelship_queue_depth",
    "ModelDeployments waiting for a worker to start their pass, by priority (spec, timer, event, resync).",
    ["priority"],
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "modelship_queue_wait_seconds",
    "Time from a pass's trigger (the one that gave it its priority) to its start, by priority.",
    ["priority"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
API_REQUESTS = Counter(
    "modelship_api_requests",
    "Requests of the operator's reconciler to the Kubernetes API, by verb and HTTP status code "
    "(kopf's own watches and annotation patches are not counted).",
    ["verb", "code"],
    registry=REGISTRY,
)
SKIPPED = Counter(
    "modelship_skipped_writes",
    "Writes a pass left out because the object is still as the operator last wrote it, by kind.",
    ["kind"],
    registry=REGISTRY,
)
SKIPPED_PASSES = Counter(
    "modelship_skipped_passes",
    "Resync passes left out because nothing a pass reads of the object changed since its last one.",
    registry=REGISTRY,
)
NOTIFICATIONS = Counter(
    "modelship_notifications",
    "Notifications by target and result: delivered, failed (every attempt failed, or the target "
    "refused it), dropped (its queue was full).",
    ["namespace", "name", "target", "result"],
    registry=REGISTRY,
)

NAMES = tuple(
    m._name + ("_total" if isinstance(m, Counter) else "")
    for m in (
        ROLLOUTS,
        CANARY_WEIGHT,
        CANARY_REQUESTED_WEIGHT,
        ANALYSIS_VERDICTS,
        RECONCILE_SECONDS,
        ROLLBACKS,
        NOTIFICATIONS,
        IN_FLIGHT,
        RESYNC_SECONDS,
        QUEUE_DEPTH,
        QUEUE_WAIT,
        API_REQUESTS,
        SKIPPED,
        SKIPPED_PASSES,
    )
)

_phases: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def record_pass(
    namespace: str,
    name: str,
    old: api.ModelDeploymentStatus,
    new: api.ModelDeploymentStatus,
    rolled_back: str | None,
) -> None:
    """Record what one reconcile pass decided (`rolled_back`: the engine's `Decision.rolled_back`)."""
    record_status(namespace, name, new)
    if rolled_back:
        ROLLBACKS.labels(namespace, name, rolled_back).inc()
    for metric, verdict in new_verdicts(old, new):
        ANALYSIS_VERDICTS.labels(namespace, name, metric, verdict).inc()


def _total(m: api.MetricStatus) -> int:
    return m.successful + m.failed + m.inconclusive + m.errors


def new_verdicts(old: api.ModelDeploymentStatus, new: api.ModelDeploymentStatus) -> list[tuple[str, str]]:
    """(metric, verdict) of every measurement this pass recorded."""
    before = {
        (r.kind, r.revision, r.started_at): {m.name: _total(m) for m in r.metrics} for r in old.analysis or []
    }
    out: list[tuple[str, str]] = []
    for run in new.analysis or []:
        seen = before.get((run.kind, run.revision, run.started_at), {})
        for m in run.metrics:
            fresh = min(_total(m) - seen.get(m.name, 0), len(m.measurements))
            out.extend(
                (m.name, x.verdict) for x in m.measurements[len(m.measurements) - fresh :] if fresh > 0
            )
    return out


def record_status(namespace: str, name: str, status: api.ModelDeploymentStatus) -> None:
    """Update the per-object gauges from a status."""
    with _lock:
        _phases[(namespace, name)] = status.phase or "Pending"
        _refresh_phases()
    CANARY_WEIGHT.labels(namespace, name).set(status.new_revision_actual_weight)
    CANARY_REQUESTED_WEIGHT.labels(namespace, name).set(status.new_revision_weight)


def forget(namespace: str, name: str) -> None:
    """A deleted ModelDeployment leaves no series behind."""
    with _lock:
        _phases.pop((namespace, name), None)
        _refresh_phases()
    for gauge in (CANARY_WEIGHT, CANARY_REQUESTED_WEIGHT):
        with contextlib.suppress(KeyError):
            gauge.remove(namespace, name)


def _refresh_phases() -> None:
    counts = Tally(_phases.values())
    for phase in get_args(api.Phase):
        ROLLOUTS.labels(phase).set(counts.get(phase, 0))


# Readiness: (ready, details shown in the response body); set by `modelship run`.
Readiness = Callable[[], tuple[bool, dict[str, Any]]]
READY_PATH = "/readyz"


def app(ready: Readiness | None) -> Callable[..., Iterable[bytes]]:
    """WSGI app: /readyz answers 200 or 503 with `ready`'s details as JSON; any other path is /metrics."""
    metrics_app = make_wsgi_app(REGISTRY)

    def serve_request(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != READY_PATH or ready is None:
            return metrics_app(environ, start_response)  # type: ignore[no-any-return]
        ok, details = ready()
        body = json.dumps({"ready": ok, **details}).encode()
        start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "application/json")])
        return [body]

    return serve_request


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scrape never holds the process open


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # probes every few seconds
        pass


def serve(port: int, address: str = "0.0.0.0", ready: Readiness | None = None) -> WSGIServer:
    """Serve /metrics (and /readyz when `ready` is given) in a background thread."""
    server = make_server(address, port, app(ready), server_class=_Server, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
