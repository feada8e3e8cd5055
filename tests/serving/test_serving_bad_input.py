"""The bad-input table: each case gets a 4xx whose reason names the problem, and the server lives on."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from .serving_helpers import Server, metric_samples

pytestmark = pytest.mark.unit

ROW = [100.0, 40.0, 5.0, 0.0]
V2 = "/v2/models/risk/infer"


def tensor(**over: object) -> bytes:
    t: dict[str, object] = {"name": "input-0", "shape": [1, 4], "datatype": "FP64", "data": ROW}
    t.update(over)
    return json.dumps({"inputs": [t]}).encode()


@dataclass(frozen=True)
class Case:
    name: str
    path: str
    body: bytes
    status: int
    reason: str  # a fragment the error message must contain
    field: str | None = None


def j(obj: object) -> bytes:
    return json.dumps(obj).encode()


CASES = [
    Case("malformed JSON", "/predict", b'{"instances": [[1, 2', 400, "not valid JSON"),
    Case("empty body", "/predict", b"", 400, "body is empty"),
    Case("not an object", "/predict", j([ROW]), 422, "must be a JSON object"),
    Case("wrong top-level field", "/predict", j({"rows": [ROW]}), 422, "unknown field 'rows'", "rows"),
    Case(
        "instances not a list",
        "/predict",
        j({"instances": {"a": 1}}),
        422,
        "must be an array of rows",
        "instances",
    ),
    Case("empty batch", "/predict", j({"instances": []}), 422, "is empty", "instances"),
    Case(
        "too few values",
        "/predict",
        j({"instances": [ROW, ROW[:3]]}),
        422,
        "instances[1] has 3 values",
        "instances[1]",
    ),
    Case("too many values", "/predict", j({"instances": [[*ROW, 1.0]]}), 422, "has 5 values", "instances[0]"),
    Case("nested too deep", "/predict", j({"instances": [[ROW]]}), 422, "has 1 values", "instances[0]"),
    Case(
        "row is a number",
        "/predict",
        j({"instances": [1, 2]}),
        422,
        "must be an array of 4 numbers",
        "instances[0]",
    ),
    Case(
        "string value",
        "/predict",
        j({"instances": [[100, "40", 5, 0]]}),
        422,
        "instances[0][1] (age) must be a number, got string",
        "instances[0][1]",
    ),
    Case(
        "boolean value",
        "/predict",
        j({"instances": [[100, 40, True, 0]]}),
        422,
        "got boolean",
        "instances[0][2]",
    ),
    Case(
        "null value", "/predict", j({"instances": [[100, 40, 5, None]]}), 422, "got null", "instances[0][3]"
    ),
    Case(
        "unknown field name",
        "/predict",
        j({"instances": [{"amount": 1, "age": 2, "tenure": 3, "scroe": 4}]}),
        422,
        "unknown field(s) 'scroe'",
        "instances[0].scroe",
    ),
    Case(
        "missing field name",
        "/predict",
        j({"instances": [{"amount": 1, "age": 2, "tenure": 3}]}),
        422,
        "missing field(s) 'score'",
        "instances[0].score",
    ),
    Case(
        "wrong type by name",
        "/predict",
        j({"instances": [{"amount": 1, "age": [2], "tenure": 3, "score": 4}]}),
        422,
        "instances[0].age must be a number, got array",
        "instances[0].age",
    ),
    Case("NaN literal", "/predict", b'{"instances": [[NaN, 40, 5, 0]]}', 400, "NaN and Infinity"),
    Case("Infinity literal", "/predict", b'{"instances": [[Infinity, 40, 5, 0]]}', 400, "NaN and Infinity"),
    Case("overflowing number", "/predict", b'{"instances": [[1e999, 40, 5, 0]]}', 400, "NaN and Infinity"),
    Case(
        "too many rows",
        "/predict",
        j({"instances": [ROW] * 65}),
        413,
        "limit is 64 (MAX_BATCH_ROWS)",
        "instances",
    ),
    Case("V2 malformed", V2, b"{", 400, "not valid JSON"),
    Case("V2 no inputs", V2, j({"id": "x"}), 422, "inputs must be an array", "inputs"),
    Case("V2 unknown field", V2, j({"input": []}), 422, "unknown field 'input'", "input"),
    Case(
        "V2 BYTES datatype",
        V2,
        tensor(datatype="BYTES"),
        422,
        "datatype 'BYTES' is not supported",
        "inputs[0].datatype",
    ),
    Case("V2 wrong shape", V2, tensor(shape=[1, 3]), 422, "shape must be [rows, 4]", "inputs[0].shape"),
    Case("V2 data length", V2, tensor(data=ROW[:3]), 422, "has 3 elements", "inputs[0].data"),
    Case(
        "V2 string in data",
        V2,
        tensor(data=[1, 2, "x", 4]),
        422,
        "inputs[0].data[2] must be a number",
        "inputs[0].data[2]",
    ),
    Case(
        "V2 missing data",
        V2,
        j({"inputs": [{"name": "a", "shape": [1, 4], "datatype": "FP64"}]}),
        422,
        "inputs[0].data is required",
        "inputs[0].data",
    ),
    Case(
        "V2 unknown output",
        V2,
        j({"inputs": [json.loads(tensor())["inputs"][0]], "outputs": [{"name": "x"}]}),
        422,
        "not an output of this model",
        "outputs[0].name",
    ),
    Case(
        "V2 output parameters not an object",
        V2,
        j(
            {
                "inputs": [json.loads(tensor())["inputs"][0]],
                "outputs": [{"name": "predict", "parameters": [1]}],
            }
        ),
        422,
        "outputs[0].parameters must be an object",
        "outputs[0].parameters",
    ),
    Case("V2 unknown model", "/v2/models/nope/infer", tensor(), 404, "not served here", "name"),
    Case("feedback malformed", "/feedback", b"[", 400, "not valid JSON"),
    Case(
        "feedback no request id",
        "/feedback",
        j({"labels": ["low"]}),
        422,
        "exactly one of token",
        "token",
    ),
    Case(
        "feedback token and request id",
        "/feedback",
        j({"token": "t", "request_id": "x", "labels": ["low"]}),
        422,
        "exactly one of token",
        "token",
    ),
    Case(
        "feedback token without a key",
        "/feedback",
        j({"token": "t.m", "labels": ["low"]}),
        400,
        "issues no feedback tokens",
        "token",
    ),
    Case(
        "feedback unknown id",
        "/feedback",
        j({"request_id": "never-seen", "label": "low"}),
        404,
        "is unknown here",
        "request_id",
    ),
    Case(
        "feedback both label forms",
        "/feedback",
        j({"request_id": "x", "label": 1, "labels": [1]}),
        422,
        "exactly one of labels",
        "labels",
    ),
    Case(
        "feedback object label",
        "/feedback",
        j({"request_id": "x", "labels": [{"a": 1}]}),
        422,
        "labels[0] must be a class",
        "labels[0]",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_a_4xx_with_a_reason(sk_server: Server, case: Case) -> None:
    r = sk_server.request("POST", case.path, case.body)
    assert r.status == case.status, r.body
    err = r.json()
    assert case.reason in err["error"], err
    assert err.get("field") == case.field, err


def test_oversized_body_by_content_length(sk_server: Server) -> None:
    body = j({"instances": [ROW] * 5000})  # > MAX_BODY_BYTES=65536 of the fixture
    r = sk_server.request("POST", "/predict", body)
    assert r.status == 413
    assert "limit is 65536 (MAX_BODY_BYTES)" in r.json()["error"]


def test_oversized_chunked_body(sk_server: Server) -> None:
    chunk = b" " * 16384
    r = sk_server.request("POST", "/predict", chunks=[b'{"instances": ', *([chunk] * 5), b"[]}"])
    assert r.status == 413
    assert "exceeds the limit of 65536 bytes" in r.json()["error"]


def test_no_bad_input_produced_a_5xx(sk_server: Server) -> None:
    for case in CASES:
        sk_server.request("POST", case.path, case.body)
    assert sk_server.get("/healthz").status == 200
    text = sk_server.get("/metrics").body.decode()
    # Counted, not merely exported: the 500 series is exported at 0 from the start.
    codes = {s["code"] for s, value in metric_samples(text, "modelserver_requests_total") if value > 0}
    assert not any(c.startswith("5") for c in codes), codes
