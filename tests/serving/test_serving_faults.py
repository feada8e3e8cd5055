"""Fault injection (MODELSERVER_FAULT_*) over real HTTP: the bad images of the rollout demo."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver.sample_models import Bundle

from .serving_helpers import Server, metric_samples

pytestmark = pytest.mark.unit

ROW = [100.0, 40.0, 5.0, 0.0]
RATIO, LATENCY = 0.5, 0.2


@pytest.fixture(scope="module")
def faulty(sklearn_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = sklearn_bundle.env() | {
        "MODELSERVER_FAULT_ERROR_RATIO": str(RATIO),
        "MODELSERVER_FAULT_LATENCY": str(LATENCY),
    }
    server = Server(env).start(tmp_path_factory.mktemp("faults") / "faulty.log")
    yield server
    server.stop()


def test_a_share_of_predictions_fail_with_a_reason_and_count_as_5xx(faulty: Server) -> None:
    codes: Counter[int] = Counter()
    for _ in range(100):
        reply = faulty.post("/predict", {"instances": [ROW]})
        codes[reply.status] += 1
        if reply.status == 500:
            assert "injected fault" in reply.json()["error"]
            assert "MODELSERVER_FAULT_ERROR_RATIO" in reply.json()["error"]
    assert set(codes) == {200, 500}
    # Binomial(100, 0.5): 50 +- 5; 25..75 is five standard deviations either side.
    assert 25 <= codes[500] <= 75, codes
    text = faulty.get("/metrics").body.decode()
    by = {(s["route"], s["code"]): v for s, v in metric_samples(text, "modelserver_requests_total")}
    assert by[("/predict", "500")] == codes[500]
    assert by[("/predict", "200")] == codes[200]


def test_v2_infer_fails_too(faulty: Server) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}]}
    codes = {faulty.post("/v2/models/risk/infer", body).status for _ in range(40)}
    assert codes == {200, 500}


def test_each_prediction_takes_the_added_latency(faulty: Server) -> None:
    for _ in range(5):
        t0 = time.perf_counter()
        faulty.post("/predict", {"instances": [ROW]})
        assert time.perf_counter() - t0 >= LATENCY
    text = faulty.get("/metrics").body.decode()
    fast = [
        v
        for s, v in metric_samples(text, "modelserver_request_duration_seconds_bucket")
        if s["route"] == "/predict" and s["le"] == "0.1"
    ]
    assert fast == [0.0]  # no prediction answered faster than the injected latency


def test_other_routes_are_untouched(faulty: Server) -> None:
    assert all(faulty.get("/readyz").status == 200 for _ in range(20))
    assert all(faulty.get("/predict").status == 200 for _ in range(20))  # the examples page


def test_metadata_and_log_say_faults_are_on(faulty: Server, sk_server: Server) -> None:
    assert faulty.get("/metadata").json()["faults"] == {
        "on": True,
        "error_ratio": RATIO,
        "latency_seconds": LATENCY,
        "unhealthy_after_seconds": 0.0,
    }
    assert "FAULT INJECTION IS ON" in faulty.output()
    assert sk_server.get("/metadata").json()["faults"] == {
        "on": False,
        "error_ratio": 0.0,
        "latency_seconds": 0.0,
        "unhealthy_after_seconds": 0.0,
    }
    assert "FAULT INJECTION" not in sk_server.output()


def test_slow_requests_do_not_hold_up_each_other(faulty: Server) -> None:
    import concurrent.futures

    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: faulty.post("/predict", {"instances": [ROW]}), range(8)))
    # Eight concurrent requests overlap their added latency instead of queueing behind it.
    assert time.perf_counter() - t0 < 5 * LATENCY


def test_healthz_fails_once_the_server_has_been_up_as_long_as_asked(
    sklearn_bundle: Bundle, tmp_path: Path
) -> None:
    server = Server(sklearn_bundle.env() | {"MODELSERVER_FAULT_UNHEALTHY_AFTER": "1.5"})
    server.start(tmp_path / "unhealthy.log")
    try:
        assert server.get("/healthz").status == 200
        time.sleep(1.6)
        reply = server.get("/healthz")
        assert reply.status == 503
        assert "MODELSERVER_FAULT_UNHEALTHY_AFTER=1.5" in reply.json()["error"]
        # Only liveness: the server still answers predictions and says it is ready.
        assert server.get("/readyz").status == 200
        assert server.get("/metadata").json()["faults"]["unhealthy_after_seconds"] == 1.5
    finally:
        server.stop()
