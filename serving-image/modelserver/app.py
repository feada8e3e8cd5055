"""The HTTP API as a plain ASGI application.

No web framework: routing is a dict lookup and JSON goes through orjson, because on small models the
per-request overhead of the framework is most of the latency (docs/serving.md has the measurements).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

from . import shadow, v2
from .errors import HTTPError, bad_input
from .feedback import forward, same_label
from .feedbacktoken import Claim, Signer, TokenError, TokenExpired
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import MODEL_ROUTES
from .openapi import document
from .schema import json_type
from .service import Service

log = logging.getLogger("modelserver.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
# A handler gets (scope, body, path params) and answers (status, body, content type, extra headers).
Response = tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]
# Handlers answer at once; only one that waits on another replica (forwarded feedback) is async.
Handler = Callable[[Scope, bytes, dict[str, str]], Response | Awaitable[Response]]

JSON = b"application/json"
_DUMP_OPTS = orjson.OPT_SERIALIZE_NUMPY
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
# The routes that run the model: the ones fault injection (MODELSERVER_FAULT_*) acts on.
_PREDICT_ROUTES = frozenset(MODEL_ROUTES)
# Set on feedback one replica forwards to the one that answered: never forwarded a second time.
_FORWARDED = b"x-modelserver-forwarded"


class _ClientGone(Exception):
    pass


def _json(status: int, obj: Any, headers: list[tuple[bytes, bytes]] | None = None) -> Response:
    return status, orjson.dumps(obj, option=_DUMP_OPTS), JSON, headers or []


def _parse_json(body: bytes) -> Any:
    if not body:
        raise HTTPError(400, "the request body is empty; send a JSON object")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        msg = str(e)
        if "infinity" in msg or b"NaN" in body or b"Infinity" in body:
            raise HTTPError(
                400, f"NaN and Infinity are not valid JSON numbers; send finite numbers ({msg})"
            ) from None
        raise HTTPError(400, f"the request body is not valid JSON: {msg}") from None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope["headers"]:
        if k == name:
            return bytes(v)
    return None


class App:
    """ASGI entry point; one instance per process, wrapping a started :class:`Service`."""

    def __init__(self, service: Service) -> None:
        self.service = service
        s = service.settings
        self._name = s.model_name
        self._version = s.model_version
        self._model_ref = {"name": s.model_name, "version": s.model_version}
        self._classes = list(service.model.classes) if service.model.classes is not None else None
        self._max_body = s.max_body_bytes
        self._max_rows = s.max_batch_rows
        self._faults = s.faults
        self._started = time.monotonic()
        self._signer = Signer(s.feedback_key) if s.feedback_key and s.pod_address else None
        self._address = s.pod_address
        self._token_ttl = s.feedback_token_ttl_s
        shadowing = s.shadow
        self._revision = shadowing.revision
        self._mirror = (
            shadow.Mirror(
                shadowing.target,
                service.metrics.observe_shadow,
                capacity=shadowing.queue,
                workers=shadowing.workers,
                timeout_s=shadowing.timeout_s,
            )
            if shadowing.target is not None
            else None
        )
        self._openapi = orjson.dumps(document(s.model_name, service.schema, s.max_batch_rows))
        self._v2_model_meta = orjson.dumps(
            v2.model_metadata(
                s.model_name,
                s.model_version,
                service.model.platform,
                service.schema.n_features,
                service.model.classes,
                service.n_classes,
            )
        )
        # path -> {method: (route label, handler)}
        self._routes: dict[str, dict[str, tuple[str, Handler]]] = {
            "/predict": {"POST": ("/predict", self._predict), "GET": ("/predict", self._examples)},
            "/feedback": {"POST": ("/feedback", self._feedback)},
            "/metadata": {"GET": ("/metadata", self._metadata)},
            "/healthz": {"GET": ("/healthz", self._live)},
            "/readyz": {"GET": ("/readyz", self._ready)},
            "/metrics": {"GET": ("/metrics", self._metrics)},
            "/openapi.json": {"GET": ("/openapi.json", self._openapi_doc)},
            "/v2": {"GET": ("/v2", self._v2_server)},
            "/v2/health/live": {"GET": ("/v2/health/live", self._live)},
            "/v2/health/ready": {"GET": ("/v2/health/ready", self._ready)},
        }
        self._v2_model_routes: dict[str, dict[str, tuple[str, Handler]]] = {
            "": {"GET": ("/v2/models/{name}", self._v2_meta)},
            "ready": {"GET": ("/v2/models/{name}/ready", self._v2_ready)},
            "infer": {"POST": ("/v2/models/{name}/infer", self._v2_infer)},
        }

    # ---- ASGI -----------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # nothing to do: the model is loaded before the server starts
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
            return
        t0 = time.perf_counter()
        method: str = scope["method"]
        route = "other"
        body = b""
        try:
            methods, params = self._resolve(scope["path"])
            if methods is None:
                raise HTTPError(404, f"no route {scope['path']!r}; see GET /openapi.json")
            entry = methods.get(method)
            if entry is None:
                route = next(iter(methods.values()))[0]
                raise HTTPError(405, f"{method} is not allowed here; use {', '.join(methods)}")
            route, handler = entry
            body = await self._read_body(scope, receive) if method == "POST" else b""
            if self._faults.on and method == "POST" and route in _PREDICT_ROUTES:
                await self._inject_faults()
            answer = handler(scope, body, params)
            if inspect.isawaitable(answer):
                answer = await answer
            status, payload, ctype, headers = answer
        except HTTPError as e:
            status, payload, ctype, headers = _json(e.status, {"error": e.reason, "field": e.field})
        except _ClientGone:
            return
        except Exception:  # a bug, not the client's fault: answer 500 and keep serving
            log.exception("unhandled error on %s %s", method, scope["path"])
            status, payload, ctype, headers = _json(500, {"error": "internal error; see the server log"})
        headers.append((b"content-type", ctype))
        headers.append((b"content-length", str(len(payload)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
        self.service.metrics.observe_request(route, method, status, time.perf_counter() - t0)
        if self._mirror is not None and route == "/predict" and method == "POST" and status == 200:
            # After the answer went out and was timed: a copy costs the user nothing.
            candidate = shadow.wanted(
                _header(scope, shadow.PERCENT_HEADER),
                _header(scope, shadow.REVISION_HEADER),
                shadow.draw(),
                self._revision,
            )
            if candidate is not None:
                self._mirror.offer(candidate, body, payload)

    async def _inject_faults(self) -> None:
        # asyncio.sleep, not time.sleep: a slow model delays its own answers, not everyone's.
        if self._faults.latency_s > 0:
            await asyncio.sleep(self._faults.latency_s)
        if random.random() < self._faults.error_ratio:
            raise HTTPError(
                500,
                f"injected fault: MODELSERVER_FAULT_ERROR_RATIO={self._faults.error_ratio:g} "
                "fails this share of requests on purpose",
            )

    def _resolve(self, path: str) -> tuple[dict[str, tuple[str, Handler]] | None, dict[str, str]]:
        methods = self._routes.get(path)
        if methods is not None:
            return methods, {}
        if not path.startswith("/v2/models/"):
            return None, {}
        # /v2/models/{name}[/versions/{version}][/ready|/infer]
        parts = path[len("/v2/models/") :].split("/")
        params = {"name": parts[0]}
        rest = parts[1:]
        if len(rest) >= 2 and rest[0] == "versions":
            params["version"] = rest[1]
            rest = rest[2:]
        if len(rest) > 1 or not parts[0]:
            return None, {}
        return self._v2_model_routes.get(rest[0] if rest else ""), params

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self._max_body
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise HTTPError(413, f"the body is {int(declared)} bytes; the limit is {limit} (MAX_BODY_BYTES)")
        chunks: list[bytes] = []
        size = 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise _ClientGone
            chunk: bytes = msg.get("body", b"")
            size += len(chunk)
            if size > limit:  # chunked uploads have no content-length to check up front
                raise HTTPError(413, f"the body exceeds the limit of {limit} bytes (MAX_BODY_BYTES)")
            chunks.append(chunk)
            if not msg.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # ---- the model API --------------------------------------------------------------------
    def _request_id(self, scope: Scope) -> str:
        given = _header(scope, b"x-request-id")
        if given is not None:
            text = given.decode("latin-1")
            if _REQUEST_ID.fullmatch(text):
                return text
        return uuid.uuid4().hex

    def _predict(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        req = _parse_json(body)
        if type(req) is not dict:
            raise bad_input(f"the request must be a JSON object with 'instances', got {json_type(req)}")
        if len(req) != 1 or "instances" not in req:
            extra = [k for k in req if k != "instances"]
            if extra:
                raise bad_input(f"unknown field {extra[0]!r}; the request has only 'instances'", extra[0])
            raise bad_input("'instances' is required: an array of rows", "instances")
        x = self.service.schema.rows_to_matrix(req["instances"], self._max_rows)
        pred = self.service.predict(x)
        rid = self._request_id(scope)
        self.service.feedback.remember(rid, pred.labels)
        out: dict[str, Any] = {"request_id": rid, "model": self._model_ref, "predictions": pred.labels}
        if self._signer is not None and self._address is not None:
            claim = Claim(self._address, rid, int(time.time()) + self._token_ttl)
            out["feedback_token"] = self._signer.issue(claim)
        if pred.probabilities is not None:
            out["probabilities"] = pred.probabilities
            out["confidence"] = pred.confidence
            out["classes"] = self._classes
        return _json(200, out, [(b"x-request-id", rid.encode())])

    def _examples(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        host = (_header(scope, b"host") or b"localhost").decode("latin-1")
        examples = self.service.examples or [
            {
                "summary": "one row of zeros (this bundle ships no examples.json)",
                "instances": [[0.0] * self.service.schema.n_features],
            }
        ]
        shown = []
        for ex in examples:
            request = {"instances": ex["instances"]}
            data = orjson.dumps(request).decode().replace("'", "'\\''")
            shown.append(
                {
                    "summary": ex["summary"],
                    "request": request,
                    "curl": f"curl -s -X POST http://{host}/predict "
                    f"-H 'content-type: application/json' -d '{data}'",
                }
            )
        return _json(
            200,
            {
                "model": self._model_ref,
                "usage": 'POST /predict with {"instances": [row, ...]}; a row is an array in feature order '
                "or an object keyed by feature name",
                "features": list(self.service.schema.features),
                "examples": shown,
            },
        )

    def _feedback(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response | Awaitable[Response]:
        req = _parse_json(body)
        if type(req) is not dict:
            raise bad_input(f"the request must be a JSON object, got {json_type(req)}")
        extra = [k for k in req if k not in ("request_id", "token", "labels", "label")]
        if extra:
            raise bad_input(f"unknown field {extra[0]!r}; send token (or request_id) and labels", extra[0])
        if ("request_id" in req) == ("token" in req):
            raise bad_input(
                "send exactly one of token (the feedback_token a /predict response returned) "
                "or request_id (when feedback reaches the replica that answered)",
                "token",
            )
        if ("labels" in req) == ("label" in req):
            raise bad_input(
                "send exactly one of labels (one per row) or label (single-row request)", "labels"
            )
        labels = req["labels"] if "labels" in req else [req["label"]]
        if not isinstance(labels, list):
            raise bad_input(f"labels must be an array, got {json_type(labels)}", "labels")
        if self.service.n_classes is None:
            raise bad_input("this model is not a classifier; feedback scores classes", "labels")
        for i, lab in enumerate(labels):
            if isinstance(lab, (dict, list)) or lab is None:
                raise bad_input(
                    f"labels[{i}] must be a class (a string or a number), got {json_type(lab)}",
                    f"labels[{i}]",
                )
        if "request_id" in req:
            rid = req["request_id"]
            if not isinstance(rid, str) or not rid:
                raise bad_input(
                    "request_id must be the request_id a /predict response returned", "request_id"
                )
            return self._score(rid, labels)
        claim = self._claim(req["token"])
        if claim.address == self._address:
            return self._score(claim.request_id, labels)
        if _header(scope, _FORWARDED) is not None:
            raise HTTPError(421, f"this replica is not {claim.address}, which the token names", "token")
        return self._forward(claim, body)

    def _claim(self, token: Any) -> Claim:
        if self._signer is None:
            raise HTTPError(
                400,
                "this server issues no feedback tokens (FEEDBACK_KEY and POD_IP are not set); "
                "send request_id",
                "token",
            )
        if not isinstance(token, str) or not token:
            raise bad_input(f"token must be the feedback_token string, got {json_type(token)}", "token")
        try:
            return self._signer.verify(token, time.time())
        except TokenExpired as err:
            raise HTTPError(410, f"{err}: the prediction is too old to label", "token") from None
        except TokenError as err:
            raise HTTPError(403, str(err), "token") from None

    async def _forward(self, claim: Claim, body: bytes) -> Response:
        """Feedback for another replica's prediction, sent on to it; its answer is ours."""
        try:
            status, payload = await asyncio.to_thread(forward, claim.address, body, _FORWARDED)
        except OSError as err:
            raise HTTPError(
                410,
                f"the replica that answered ({claim.address}) cannot be reached ({err}); "
                "its predictions can no longer be labelled",
                "token",
            ) from None
        return status, payload, JSON, []

    def _score(self, rid: str, labels: list[Any]) -> Response:
        predicted = self.service.feedback.take(rid)
        if predicted is None:
            raise HTTPError(
                404,
                f"request_id {rid!r} is unknown here, already labelled, or too old to remember",
                "request_id",
            )
        if len(labels) != len(predicted):
            self.service.feedback.remember(rid, predicted)  # a malformed label must not burn the request
            raise bad_input(
                f"labels has {len(labels)} entries; request {rid} predicted {len(predicted)} rows", "labels"
            )
        correct = sum(same_label(p, a) for p, a in zip(predicted, labels, strict=True))
        incorrect = len(labels) - correct
        self.service.metrics.observe_feedback(correct, incorrect)
        return _json(200, {"request_id": rid, "correct": correct, "incorrect": incorrect})

    # ---- about the server ----------------------------------------------------------------
    def _metadata(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        return _json(200, self.service.metadata())

    def _live(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        after = self._faults.unhealthy_after_s
        if after > 0 and time.monotonic() - self._started >= after:
            message = f"injected fault: MODELSERVER_FAULT_UNHEALTHY_AFTER={after:g}"
            return 503, orjson.dumps({"live": False, "error": message}), JSON, []
        return 200, b'{"live":true}', JSON, []

    def _ready(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        if self.service.ready:
            return 200, b'{"ready":true}', JSON, []
        return 503, b'{"ready":false,"error":"not ready (starting or shutting down)"}', JSON, []

    def _metrics(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        return 200, self.service.metrics.exposition(), METRICS_CONTENT_TYPE.encode(), []

    def _openapi_doc(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        return 200, self._openapi, JSON, []

    # ---- Open Inference Protocol (V2) ---------------------------------------------------
    def _check_model(self, params: dict[str, str]) -> None:
        if params["name"] != self._name:
            raise HTTPError(
                404, f"model {params['name']!r} is not served here; this server serves {self._name!r}", "name"
            )
        version = params.get("version")
        if version is not None and version != self._version:
            raise HTTPError(
                404,
                f"version {version!r} of {self._name!r} is not served here; "
                f"this server serves {self._version!r}",
                "version",
            )

    def _v2_server(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        return _json(200, v2.server_metadata())

    def _v2_meta(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        self._check_model(params)
        return 200, self._v2_model_meta, JSON, []

    def _v2_ready(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        self._check_model(params)
        ready = self.service.ready
        return _json(200 if ready else 503, {"name": self._name, "ready": ready})

    def _v2_infer(self, scope: Scope, body: bytes, params: dict[str, str]) -> Response:
        self._check_model(params)
        if _header(scope, b"inference-header-content-length") is not None:
            raise HTTPError(400, "the binary tensor data extension is not supported; send JSON data")
        tensor, rid, wanted = v2.parse_infer(_parse_json(body))
        x = self.service.schema.tensor_to_matrix(tensor, self._max_rows)
        pred = self.service.predict(x)
        rid = rid or self._request_id(scope)
        self.service.feedback.remember(rid, pred.labels)
        out = v2.infer_response(self._name, self._version, rid, x, pred, wanted)
        # A V2 id is any string the client chose; only echo it as a header when it is header-safe.
        return _json(200, out, [(b"x-request-id", rid.encode())] if _REQUEST_ID.fullmatch(rid) else [])
