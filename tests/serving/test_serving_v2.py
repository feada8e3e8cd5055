"""The Open Inference Protocol (V2) with the Triton HTTP client, as KServe/Triton users call it."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as triton
from modelserver.sample_models import Bundle
from tritonclient.utils import InferenceServerException

from .serving_helpers import Server

pytestmark = pytest.mark.unit

ROWS = np.array([[100.0, 40.0, 5.0, 0.0], [50.0, 20.0, 1.0, -2.0], [180.0, 25.0, 9.0, 1.5]])


@pytest.fixture
def client(sk_server: Server) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url=f"127.0.0.1:{sk_server.port}")


def test_health_and_readiness(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("risk")
    assert client.is_model_ready("risk", model_version="7")
    assert not client.is_model_ready("other")


def test_model_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_model_metadata("risk")
    assert meta["name"] == "risk"
    assert meta["versions"] == ["7"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert {o["name"] for o in meta["outputs"]} == {"predict", "predict_proba"}


@pytest.mark.parametrize("dtype", ["FP64", "FP32"])
def test_infer_matches_the_model(
    client: triton.InferenceServerClient, sklearn_bundle: Bundle, dtype: str
) -> None:
    import joblib

    est = joblib.load(sklearn_bundle.model_path)
    inp = triton.InferInput("input-0", list(ROWS.shape), dtype)
    inp.set_data_from_numpy(ROWS.astype(np.float64 if dtype == "FP64" else np.float32), binary_data=False)
    outputs = [
        triton.InferRequestedOutput("predict", binary_data=False),
        triton.InferRequestedOutput("predict_proba", binary_data=False),
    ]
    result = client.infer("risk", [inp], outputs=outputs, request_id="req-1")
    x = ROWS.astype(np.float32).astype(np.float64) if dtype == "FP32" else ROWS
    labels = result.as_numpy("predict")
    assert [v.decode() if isinstance(v, bytes) else v for v in labels.tolist()] == est.predict(x).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), est.predict_proba(x), atol=1e-12)
    response = result.get_response()
    assert response["id"] == "req-1"
    assert response["model_name"] == "risk" and response["model_version"] == "7"


def test_infer_with_version_route(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("input-0", [1, 4], "FP64")
    inp.set_data_from_numpy(ROWS[:1], binary_data=False)
    result = client.infer(
        "risk", [inp], model_version="7", outputs=[triton.InferRequestedOutput("predict", binary_data=False)]
    )
    assert result.as_numpy("predict").shape == (1,)
    assert result.as_numpy("predict_proba") is None  # only what was asked for


def test_unknown_model_and_version_are_404(client: triton.InferenceServerClient, sk_server: Server) -> None:
    inp = triton.InferInput("input-0", [1, 4], "FP64")
    inp.set_data_from_numpy(ROWS[:1], binary_data=False)
    with pytest.raises(InferenceServerException, match="not served here"):
        client.infer("other", [inp])
    r = sk_server.get("/v2/models/risk/versions/8")
    assert r.status == 404 and r.json()["field"] == "version"


def test_binary_tensor_extension_is_refused_with_a_reason(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("input-0", [1, 4], "FP64")
    inp.set_data_from_numpy(ROWS[:1], binary_data=True)
    with pytest.raises(InferenceServerException, match="binary tensor data extension is not supported"):
        client.infer("risk", [inp])


def test_v2_feedback_by_request_id(sk_server: Server) -> None:
    body = {
        "id": "v2-fb-1",
        "inputs": [{"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": [100, 40, 5, 0]}],
    }
    r = sk_server.post("/v2/models/risk/infer", body)
    label = r.json()["outputs"][0]["data"][0]
    fb = sk_server.post("/feedback", {"request_id": "v2-fb-1", "label": label})
    assert fb.json()["correct"] == 1


def test_server_metadata(sk_server: Server) -> None:
    assert sk_server.get("/v2").json()["name"] == "modelserver"
