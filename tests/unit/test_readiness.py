"""The operator's readiness (/readyz on the metrics port, the chart's readiness probe): ready once the
resync has listed the ModelDeployments and while the operator is live (a resync pass or, behind a
backlog, a queued pass ended recently), and /metrics served beside it as before."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import kopf
import pytest
from kubernetes.client import ApiClient

from modelship import handlers, metrics
from modelship.kube.storage import Storage

pytestmark = pytest.mark.unit


def get(path: str, ready: metrics.Readiness | None) -> tuple[str, bytes]:
    environ: dict[str, Any] = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    seen: list[str] = []
    body = b"".join(metrics.app(ready)(environ, lambda status, headers: seen.append(status)))
    return seen[0], body


def test_readyz_answers_503_with_the_details_until_ready_then_200() -> None:
    status, body = get("/readyz", lambda: (False, {"passes": 0}))
    assert status.startswith("503") and json.loads(body) == {"ready": False, "passes": 0}
    status, body = get("/readyz", lambda: (True, {"passes": 3}))
    assert status.startswith("200") and json.loads(body) == {"ready": True, "passes": 3}


def test_metrics_are_still_served_on_the_same_port() -> None:
    metrics.ROLLOUTS.labels("Healthy").set(0)
    status, body = get("/metrics", lambda: (False, {}))
    assert status.startswith("200") and b"modelship_rollouts" in body


@pytest.fixture
def runtime() -> Iterator[handlers.Runtime]:
    r = handlers.RUNTIME
    saved = (r.resync_passes, r.last_resync, r.resync_seconds, r.listed, r.reconciler)
    r.resync_seconds, r.reconciler = 30, None
    yield r
    r.resync_passes, r.last_resync, r.resync_seconds, r.listed, r.reconciler = saved


def test_not_ready_before_the_resync_has_listed_the_modeldeployments(runtime: handlers.Runtime) -> None:
    runtime.resync_passes, runtime.last_resync, runtime.listed = 0, time.monotonic(), False
    ready, details = handlers.readiness()
    assert not ready and details["passes"] == 0
    runtime.listed = True  # listed: the credentials, RBAC and CRD work, though no pass ended yet
    assert handlers.readiness()[0]


def test_ready_after_a_recent_pass_and_not_once_passes_stop(runtime: handlers.Runtime) -> None:
    runtime.resync_passes, runtime.last_resync, runtime.listed = 1, time.monotonic() - 5, True
    assert handlers.readiness()[0]
    runtime.last_resync = time.monotonic() - 91  # three resync periods without a completed pass
    ready, details = handlers.readiness()
    assert not ready and details["secondsSinceLastPass"] >= 91
    with pytest.raises(kopf.PermanentError, match=r"no resync pass and no reconcile for 9[0-9]s"):
        handlers.resync_probe()


def test_live_and_ready_while_a_resync_waits_behind_a_backlog_whose_passes_end(
    runtime: handlers.Runtime,
) -> None:
    """Thousands created at once: the resync's own passes wait behind them for minutes, but the
    queue moves, so the operator is neither restarted nor taken out of service."""
    runtime.reconciler = handlers.Reconciler(Storage(ApiClient()))  # no request is made
    runtime.resync_passes, runtime.last_resync, runtime.listed = 1, time.monotonic() - 600, True
    runtime.reconciler.queue.last_ended = time.monotonic() - 600
    assert not handlers.readiness()[0], "neither a resync pass nor a queued pass for ten minutes"
    runtime.reconciler.queue.last_ended = time.monotonic() - 2  # a queued pass ended just now
    assert handlers.readiness()[0]
    assert handlers.resync_probe()["secondsSinceLastPass"] >= 600
