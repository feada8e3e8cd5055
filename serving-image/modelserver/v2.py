"""The Open Inference Protocol (KServe V2) REST shapes: model metadata and infer request/response."""

from __future__ import annotations

from typing import Any

from . import __version__
from .backends import Prediction
from .errors import HTTPError, bad_input
from .schema import Matrix, json_type

INPUT_NAME = "input-0"
# Output names as MLServer's sklearn runtime uses them, so clients can switch servers unchanged.
OUT_PREDICT = "predict"
OUT_PROBA = "predict_proba"


def server_metadata() -> dict[str, Any]:
    return {"name": "modelserver", "version": __version__, "extensions": []}


def _label_datatype(labels: list[Any]) -> str:
    if all(isinstance(v, bool) for v in labels):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return "INT64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in labels):
        return "FP64"
    return "BYTES"


def model_metadata(
    name: str,
    version: str,
    platform: str,
    n_features: int,
    classes: tuple[Any, ...] | None,
    n_proba: int | None,
) -> dict[str, Any]:
    outputs: list[dict[str, Any]] = [
        {
            "name": OUT_PREDICT,
            "datatype": _label_datatype(list(classes)) if classes else "FP64",
            "shape": [-1],
        }
    ]
    if n_proba is not None:
        outputs.append({"name": OUT_PROBA, "datatype": "FP64", "shape": [-1, n_proba]})
    return {
        "name": name,
        "versions": [version],
        "platform": platform,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP64", "shape": [-1, n_features]}],
        "outputs": outputs,
    }


def parse_infer(body: Any) -> tuple[Any, str | None, set[str] | None]:
    """Return (the input tensor, the request id, the requested output names or None for all)."""
    if not isinstance(body, dict):
        raise bad_input(f"the request must be a JSON object, got {json_type(body)}")
    unknown = set(body) - {"id", "inputs", "outputs", "parameters"}
    if unknown:
        first = sorted(unknown)[0]
        raise bad_input(f"unknown field {first!r}; a V2 request has id, inputs, outputs, parameters", first)
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise bad_input("id must be a string", "id")
    if "parameters" in body and not isinstance(body["parameters"], dict):
        raise bad_input("parameters must be an object", "parameters")
    inputs = body.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise bad_input("inputs must be an array with exactly one tensor (rows x features)", "inputs")
    wanted: set[str] | None = None
    outputs = body.get("outputs")
    if outputs is not None:
        if not isinstance(outputs, list):
            raise bad_input("outputs must be an array of {name}", "outputs")
        wanted = set()
        for i, o in enumerate(outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise bad_input(f"outputs[{i}] must be an object with a string name", f"outputs[{i}].name")
            if o["name"] not in (OUT_PREDICT, OUT_PROBA):
                raise bad_input(
                    f"outputs[{i}].name {o['name']!r} is not an output of this model; "
                    f"use {OUT_PREDICT!r} or {OUT_PROBA!r}",
                    f"outputs[{i}].name",
                )
            params = o.get("parameters", {})
            if not isinstance(params, dict):
                raise bad_input(f"outputs[{i}].parameters must be an object", f"outputs[{i}].parameters")
            if params.get("binary_data"):
                raise HTTPError(400, "the binary tensor data extension is not supported", f"outputs[{i}]")
            wanted.add(o["name"])
    return inputs[0], rid, wanted


def infer_response(
    name: str, version: str, rid: str, x: Matrix, pred: Prediction, wanted: set[str] | None
) -> dict[str, Any]:
    outputs: list[dict[str, Any]] = []
    if wanted is None or OUT_PREDICT in wanted:
        outputs.append(
            {
                "name": OUT_PREDICT,
                "shape": [len(x)],
                "datatype": _label_datatype(pred.labels),
                "data": pred.labels,
            }
        )
    if pred.probabilities is not None and (wanted is None or OUT_PROBA in wanted):
        p = pred.probabilities
        outputs.append({"name": OUT_PROBA, "shape": list(p.shape), "datatype": "FP64", "data": p.reshape(-1)})
    elif wanted is not None and OUT_PROBA in wanted:
        raise bad_input(f"this model has no {OUT_PROBA!r} output", "outputs")
    return {"model_name": name, "model_version": version, "id": rid, "outputs": outputs}
