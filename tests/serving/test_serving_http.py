"""Every endpoint of the sklearn server, over real HTTP."""

from __future__ import annotations

import http.client
import json
import socket
import time

import numpy as np
import pytest
from modelserver.sample_models import FEATURES, Bundle

from .serving_helpers import Server, metric_samples

pytestmark = pytest.mark.unit

ROW = [100.0, 40.0, 5.0, 0.0]


def test_liveness_and_readiness(sk_server: Server) -> None:
    assert sk_server.get("/healthz").json() == {"live": True}
    assert sk_server.get("/readyz").json() == {"ready": True}


def test_predict_rows_by_position(sk_server: Server, sklearn_bundle: Bundle) -> None:
    import joblib

    est = joblib.load(sklearn_bundle.model_path)
    rows = [ROW, [50.0, 20.0, 1.0, -2.0]]
    r = sk_server.post("/predict", {"instances": rows})
    assert r.status == 200, r.body
    body = r.json()
    assert body["predictions"] == est.predict(rows).tolist()
    assert body["classes"] == est.classes_.tolist()
    np.testing.assert_allclose(body["probabilities"], est.predict_proba(rows), rtol=0, atol=1e-12)
    assert body["confidence"] == pytest.approx([max(p) for p in body["probabilities"]])
    assert body["model"] == {"name": "risk", "version": "7"}
    assert r.headers["x-request-id"] == body["request_id"]
    assert len(body["request_id"]) == 32


def test_predict_rows_by_name_equals_by_position(sk_server: Server) -> None:
    by_name = sk_server.post("/predict", {"instances": [dict(zip(FEATURES, ROW, strict=True))]}).json()
    by_pos = sk_server.post("/predict", {"instances": [ROW]}).json()
    assert by_name["probabilities"] == by_pos["probabilities"]


def test_client_request_id_is_used(sk_server: Server) -> None:
    r = sk_server.post("/predict", {"instances": [ROW]}, headers={"x-request-id": "client-42"})
    assert r.json()["request_id"] == "client-42"
    assert r.headers["x-request-id"] == "client-42"


def test_get_predict_gives_copyable_examples_that_work(sk_server: Server) -> None:
    body = sk_server.get("/predict").json()
    assert body["features"] == list(FEATURES)
    assert len(body["examples"]) == 2
    for ex in body["examples"]:
        assert ex["curl"].startswith(f"curl -s -X POST http://127.0.0.1:{sk_server.port}/predict")
        assert sk_server.post("/predict", ex["request"]).status == 200


def test_metadata_says_what_is_running(sk_server: Server, sklearn_bundle: Bundle) -> None:
    meta = sk_server.get("/metadata").json()
    assert meta["name"] == "risk" and meta["version"] == "7"
    assert meta["framework"] == "sklearn"
    assert meta["artifact"] == {
        "file": "model.joblib",
        "sha256": sklearn_bundle.sha256,
        "verified": True,
        "loaded_file": "model.joblib",
    }
    assert [f["name"] for f in meta["input_schema"]["features"]] == list(FEATURES)
    assert meta["image"] == {
        "ref": "",
        "digest": "sha256:" + "ab" * 32,
        "git_revision": "0123abc",
        "build_time": "2026-01-02T03:04:05Z",
        "version": "0.1.0",
    }
    assert meta["accelerator"] == {"requested": "cpu", "in_use": "cpu", "note": ""}
    assert meta["self_test"] == {"golden_rows_passed": 8}
    assert meta["runtime"] == {"sklearn_fast_path": "on"}


def test_feedback_counts_correct_and_incorrect(sk_server: Server) -> None:
    before = sk_server.get("/metrics").body.decode()

    def count(text: str, outcome: str) -> float:
        return sum(
            v
            for labels, v in metric_samples(text, "modelserver_feedback_total")
            if labels["outcome"] == outcome
        )

    pred = sk_server.post("/predict", {"instances": [ROW, ROW, ROW]}).json()
    truth = pred["predictions"][0]
    other = next(c for c in pred["classes"] if c != truth)
    r = sk_server.post("/feedback", {"request_id": pred["request_id"], "labels": [truth, other, truth]})
    assert r.status == 200, r.body
    assert r.json() == {"request_id": pred["request_id"], "correct": 2, "incorrect": 1}
    after = sk_server.get("/metrics").body.decode()
    assert count(after, "correct") - count(before, "correct") == 2
    assert count(after, "incorrect") - count(before, "incorrect") == 1
    # A label counts once: the same request id again is unknown.
    again = sk_server.post("/feedback", {"request_id": pred["request_id"], "labels": [truth, truth, truth]})
    assert again.status == 404


def test_single_label_feedback(sk_server: Server) -> None:
    pred = sk_server.post("/predict", {"instances": [ROW]}).json()
    r = sk_server.post("/feedback", {"request_id": pred["request_id"], "label": pred["predictions"][0]})
    assert r.json()["correct"] == 1


def test_feedback_with_wrong_label_count_keeps_the_request(sk_server: Server) -> None:
    pred = sk_server.post("/predict", {"instances": [ROW, ROW]}).json()
    bad = sk_server.post("/feedback", {"request_id": pred["request_id"], "labels": ["low"]})
    assert bad.status == 422 and bad.json()["field"] == "labels"
    good = sk_server.post("/feedback", {"request_id": pred["request_id"], "labels": ["low", "low"]})
    assert good.status == 200


def test_openapi_document(sk_server: Server) -> None:
    doc = sk_server.get("/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    for path in ("/predict", "/feedback", "/metadata", "/v2/models/{name}/infer", "/healthz", "/readyz"):
        assert path in doc["paths"]
    row = doc["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert row["properties"]["instances"]["items"]["oneOf"][1]["required"] == list(FEATURES)


def test_metrics_after_traffic(sk_server: Server) -> None:
    sk_server.post("/predict", {"instances": [ROW] * 4})
    sk_server.post("/predict", {"instances": []})
    text = sk_server.get("/metrics").body.decode()
    reqs = metric_samples(text, "modelserver_requests_total")
    by = {(s["route"], s["code"]): v for s, v in reqs}
    assert by[("/predict", "200")] >= 1
    assert by[("/predict", "422")] >= 1
    assert all(s["model_name"] == "risk" and s["model_version"] == "7" for s, _ in reqs)
    conf = metric_samples(text, "modelserver_prediction_confidence_count")
    assert conf and conf[0][1] >= 4  # one observation per row
    infer = metric_samples(text, "modelserver_inference_duration_seconds_count")
    assert infer and infer[0][1] >= 1
    info = metric_samples(text, "modelserver_model_info")
    assert info == [
        (
            {
                "model_name": "risk",
                "model_version": "7",
                "framework": "sklearn",
                "sha256": info[0][0]["sha256"],
                "accelerator": "cpu",
                "accelerator_requested": "cpu",
            },
            1.0,
        )
    ]


def test_unknown_route_and_wrong_method(sk_server: Server) -> None:
    r = sk_server.get("/nope")
    assert r.status == 404 and "no route" in r.json()["error"]
    r = sk_server.request("DELETE", "/predict")
    assert r.status == 405 and "POST" in r.json()["error"]


def test_predict_json_is_compact_and_typed(sk_server: Server) -> None:
    r = sk_server.post("/predict", {"instances": [ROW]})
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.body)
    json.loads(r.body)


def test_an_idle_keep_alive_connection_outlives_a_gateways_reuse_of_it(sk_server: Server) -> None:
    # uvicorn's own default closes a connection idle for 5 s; a gateway keeps its idle connections
    # longer (Traefik 90 s) and answers 502 when it sends on one the server is closing.
    conn = http.client.HTTPConnection("127.0.0.1", sk_server.port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        first = conn.getresponse()
        assert first.status == 200
        first.read()  # the whole answer: nothing of it left on the socket
        sock = conn.sock
        assert sock is not None
        time.sleep(6.5)
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):  # nothing to read, and not closed (b"")
            sock.recv(1, socket.MSG_PEEK)
        sock.setblocking(True)
        sock.settimeout(5)
        conn.request("GET", "/healthz")
        assert conn.getresponse().status == 200
        assert conn.sock is sock  # the same connection, not a new one
    finally:
        conn.close()
