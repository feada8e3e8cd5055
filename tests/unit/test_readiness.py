"""The operator's readiness (/readyz on the metrics port, the chart's readiness probe): ready once a
resync pass has completed recently, and /metrics served beside it as before."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from modelship import handlers, metrics

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
    saved = (handlers.RUNTIME.resync_passes, handlers.RUNTIME.last_resync, handlers.RUNTIME.resync_seconds)
    yield handlers.RUNTIME
    handlers.RUNTIME.resync_passes, handlers.RUNTIME.last_resync, handlers.RUNTIME.resync_seconds = saved


def test_not_ready_before_the_first_resync_pass(runtime: handlers.Runtime) -> None:
    runtime.resync_passes, runtime.last_resync = 0, time.monotonic()
    ready, details = handlers.readiness()
    assert not ready and details["passes"] == 0


def test_ready_after_a_recent_pass_and_not_once_passes_stop(runtime: handlers.Runtime) -> None:
    runtime.resync_seconds = 30
    runtime.resync_passes, runtime.last_resync = 1, time.monotonic() - 5
    assert handlers.readiness()[0]
    runtime.last_resync = time.monotonic() - 91  # three resync periods without a completed pass
    ready, details = handlers.readiness()
    assert not ready and details["secondsSinceLastPass"] >= 91
