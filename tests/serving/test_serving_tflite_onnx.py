"""TFLite (with the Coral CPU fallback) and ONNX models, served for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from modelserver.artifact import sha256_of
from modelserver.cli import EXIT_CHECKSUM, EXIT_MODEL
from modelserver.sample_models import Bundle, dataset, train

from .serving_helpers import Server, metric_samples, run_to_exit

pytestmark = pytest.mark.unit

ROWS = [[100.0, 40.0, 5.0, 0.0], [50.0, 20.0, 1.0, -2.0]]


def test_coral_without_delegate_falls_back_to_cpu_and_says_so(coral_server: Server) -> None:
    meta = coral_server.get("/metadata").json()
    assert meta["framework"] == "tflite"
    assert meta["accelerator"]["requested"] == "coral"
    assert meta["accelerator"]["in_use"] == "cpu"
    assert "libedgetpu.so.1" in meta["accelerator"]["note"]
    assert meta["artifact"]["file"] == "model_edgetpu.tflite"
    assert meta["artifact"]["loaded_file"] == "model.tflite"  # the int8 twin
    log = coral_server.output()
    assert "ACCELERATOR=coral but running on CPU" in log
    info = metric_samples(coral_server.get("/metrics").body.decode(), "modelserver_model_info")
    assert info[0][0]["accelerator"] == "cpu"
    assert info[0][0]["accelerator_requested"] == "coral"
    assert info[0][0]["framework"] == "tflite"


def test_coral_fallback_serves_predictions(coral_server: Server) -> None:
    r = coral_server.post("/predict", {"instances": ROWS})
    assert r.status == 200, r.body
    body = r.json()
    assert body["classes"] == ["high", "low", "medium"]
    assert all(p in body["classes"] for p in body["predictions"])
    for probs in body["probabilities"]:
        assert sum(probs) == pytest.approx(1.0, abs=0.02)  # int8 softmax output, scale 1/256


def test_coral_fallback_over_v2(coral_server: Server) -> None:
    body = {"inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32", "data": ROWS}]}
    r = coral_server.post("/v2/models/risk-tpu/infer", body)
    assert r.status == 200, r.body
    assert r.json()["outputs"][1]["shape"] == [2, 3]


def test_int8_tflite_agrees_with_the_float_model(tflite_bundle: Bundle, tmp_path: Path) -> None:
    """The hand-built int8 flatbuffer is an honest quantization of the sklearn model."""
    server = Server(tflite_bundle.env(name="t")).start(tmp_path / "log")
    try:
        x, _ = dataset(n=300)
        rows = np.round(x, 4).tolist()
        got = [server.post("/predict", {"instances": rows[i : i + 50]}).json() for i in range(0, 300, 50)]
    finally:
        server.stop()
    preds = [p for g in got for p in g["predictions"]]
    want = train().predict(np.array(rows)).tolist()
    agree = np.mean([a == b for a, b in zip(preds, want, strict=True)])
    assert agree >= 0.95, agree


def test_edgetpu_model_without_its_twin_refuses_to_start(edgetpu_bundle: Bundle, copy_bundle) -> None:  # type: ignore[no-untyped-def]
    model = copy_bundle(edgetpu_bundle)
    (model.parent / "model.tflite").unlink()
    r = run_to_exit({"MODEL_PATH": str(model), "MODEL_SHA256": edgetpu_bundle.sha256, "ACCELERATOR": "coral"})
    assert r.code == EXIT_MODEL, r.text
    assert "cannot run on the CPU" in r.text and "model.tflite is not beside it" in r.text


def test_twin_checksum_is_verified(edgetpu_bundle: Bundle) -> None:
    r = run_to_exit(
        {
            "MODEL_PATH": str(edgetpu_bundle.model_path),
            "MODEL_SHA256": edgetpu_bundle.sha256,
            "ACCELERATOR": "coral",
            "MODEL_CPU_SHA256": "1" * 64,
        }
    )
    assert r.code == EXIT_CHECKSUM, r.text
    assert "MODEL_CPU_SHA256" in r.text


def test_edgetpu_model_with_accelerator_cpu_uses_the_twin(edgetpu_bundle: Bundle) -> None:
    twin = edgetpu_bundle.model_path.with_name("model.tflite")
    r = run_to_exit(
        {
            "MODEL_PATH": str(edgetpu_bundle.model_path),
            "MODEL_SHA256": edgetpu_bundle.sha256,
            "ACCELERATOR": "cpu",
            "MODEL_CPU_SHA256": sha256_of(twin),
        },
        ["--check"],
    )
    assert r.code == 0, r.text
    assert '"loaded_file": "model.tflite"' in r.stdout


def test_onnx_matches_sklearn(onnx_server: Server, sklearn_bundle: Bundle) -> None:
    import joblib

    est = joblib.load(sklearn_bundle.model_path)
    body = onnx_server.post("/predict", {"instances": ROWS}).json()
    assert body["predictions"] == est.predict(ROWS).tolist()
    assert body["classes"] == est.classes_.tolist()
    np.testing.assert_allclose(body["probabilities"], est.predict_proba(ROWS), atol=1e-5)
    meta = onnx_server.get("/v2/models/risk-onnx").json()
    assert meta["platform"] == "onnxruntime_onnx"


def test_onnx_float32_range_is_enforced(onnx_server: Server) -> None:
    r = onnx_server.post("/predict", {"instances": [[1e39, 40.0, 5.0, 0.0]]})
    assert r.status == 422
    assert r.json()["field"] == "instances[0][0]"
