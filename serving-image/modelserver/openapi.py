"""The OpenAPI document, generated for the loaded model so its request schemas name real features."""

from __future__ import annotations

from typing import Any

from . import __version__
from .schema import V2_NUMERIC, InputSchema

_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"type": "string"}, "field": {"type": "string", "nullable": True}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "malformed JSON",
        403: "a feedback token that was not issued by this model",
        404: "unknown model or request id",
        410: "an expired feedback token, or the replica that answered is gone",
        421: "forwarded feedback that names another replica",
        413: "body or batch too large",
        422: "input does not fit the model; the reason names the field",
        503: "not ready",
    }
    return {str(c): _json(_ERROR, reasons[c]) for c in codes}


def document(model_name: str, schema: InputSchema, max_rows: int) -> dict[str, Any]:
    nf = schema.n_features
    number = {"type": "number"}
    row_array = {"type": "array", "items": number, "minItems": nf, "maxItems": nf}
    row_object = {
        "type": "object",
        "properties": {n: number for n in schema.features},
        "required": list(schema.features),
        "additionalProperties": False,
    }
    predict_req = {
        "type": "object",
        "required": ["instances"],
        "additionalProperties": False,
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_rows,
                "items": {"oneOf": [row_array, row_object]},
            }
        },
    }
    predict_resp = {
        "type": "object",
        "required": ["request_id", "predictions"],
        "properties": {
            "request_id": {"type": "string"},
            "model": {"type": "object"},
            "predictions": {"type": "array"},
            "probabilities": {"type": "array", "items": {"type": "array", "items": number}},
            "confidence": {"type": "array", "items": number},
            "classes": {"type": "array"},
            "feedback_token": {"type": "string", "description": "send it with the labels to any replica"},
        },
    }
    feedback_req = {
        "type": "object",
        "oneOf": [{"required": ["token"]}, {"required": ["request_id"]}],
        "additionalProperties": False,
        "properties": {
            "token": {"type": "string", "minLength": 1},
            "request_id": {"type": "string", "minLength": 1},
            "labels": {"type": "array", "minItems": 1},
            "label": {},
        },
    }
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "datatype": {"type": "string", "enum": sorted(V2_NUMERIC)},
            "data": {"type": "array"},
            "parameters": {"type": "object"},
        },
    }
    infer_req = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                },
            },
        },
    }
    ok_obj = _json({"type": "object"}, "OK")
    name_param = {
        "name": "name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": f"the served model's name ({model_name!r})",
    }

    def get(summary: str, *codes: int, params: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "responses": {"200": ok_obj, **_errors(*codes)}}
        if params:
            op["parameters"] = params
        return {"get": op}

    return {
        "openapi": "3.0.3",
        "info": {"title": "modelserver", "version": __version__},
        "paths": {
            "/predict": {
                "post": {
                    "summary": "Predict rows",
                    "requestBody": {"required": True, **_json(predict_req, "rows, by position or by name")},
                    "responses": {"200": _json(predict_resp, "predictions"), **_errors(400, 413, 422)},
                },
                "get": {"summary": "Example requests to copy", "responses": {"200": ok_obj}},
            },
            "/feedback": {
                "post": {
                    "summary": "Send the true label(s) of an earlier prediction",
                    "requestBody": {"required": True, **_json(feedback_req, "token and labels")},
                    "responses": {"200": ok_obj, **_errors(400, 403, 404, 410, 413, 421, 422)},
                }
            },
            "/metadata": get("What is being served"),
            "/healthz": get("Liveness"),
            "/readyz": get("Readiness: model loaded and self-tested", 503),
            "/metrics": {
                "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "text"}}}
            },
            "/v2": get("V2 server metadata"),
            "/v2/health/live": get("V2 liveness"),
            "/v2/health/ready": get("V2 readiness", 503),
            "/v2/models/{name}": get("V2 model metadata", 404, params=[name_param]),
            "/v2/models/{name}/ready": get("V2 model readiness", 404, 503, params=[name_param]),
            "/v2/models/{name}/infer": {
                "post": {
                    "summary": "V2 inference",
                    "parameters": [name_param],
                    "requestBody": {"required": True, **_json(infer_req, "V2 inference request")},
                    "responses": {"200": ok_obj, **_errors(400, 404, 413, 422)},
                }
            },
        },
    }
