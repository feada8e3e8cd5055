"""A weighted HTTP router on loopback, standing in for a Gateway API data plane (and kube-proxy).

For the target `<namespace>/<name>`: if an HTTPRoute `<name>` exists, each request goes to one
of its first rule's backendRefs (Services) picked with probability weight / sum of weights
(weight defaults to 1; all zero -> 500, as the Gateway API asks), then to a ready endpoint of
that Service picked uniformly. Without an HTTPRoute it picks uniformly among the ready
endpoints of the Service `<name>`, like kube-proxy. A backend with no ready endpoint answers
503. Endpoints come from EndpointSlices (`kubernetes.io/service-name`); the pod IP is dialled
at its loopback twin (localworld.addresses). HTTPRoutes and EndpointSlices are watched, so a
weight change takes effect as soon as the API server reports it. Counters per backend
Service and per endpoint let tests check the observed split.

Feedback affinity, the local world's stand-in for Gateway API session persistence: the
model server remembers its predictions per request id in its own memory, so `POST /feedback`
must reach the replica that answered. The router remembers (bounded, least recently used
forgotten first) which endpoint answered each request id (the `X-Request-Id` response
header) and sends feedback naming that id (`request_id` in the JSON body) to it.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
from collections import Counter, OrderedDict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

from localworld.addresses import loopback
from localworld.informer import Informer

GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"
# Request headers that belong to one connection and are not forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade"}
FEEDBACK_PATH = "/feedback"
AFFINITY_CAPACITY = 100_000  # request ids remembered; the modelserver remembers 10,000 by default


class Affinity:
    """request id -> (backend Service, endpoint) that answered it; a bounded LRU map."""

    def __init__(self, capacity: int = AFFINITY_CAPACITY) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, tuple[str, tuple[str, int]]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def remember(self, request_id: str, backend: str, endpoint: tuple[str, int]) -> None:
        with self._lock:
            self._items[request_id] = (backend, endpoint)
            self._items.move_to_end(request_id)
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def lookup(self, request_id: str) -> tuple[str, tuple[str, int]] | None:
        with self._lock:
            found = self._items.get(request_id)
            if found is not None:
                self._items.move_to_end(request_id)
            return found


def feedback_request_id(method: str, path: str, body: bytes) -> str | None:
    """The request id a `POST /feedback` body names, if it is one (else None: route as usual)."""
    if method != "POST" or path.split("?", 1)[0] != FEEDBACK_PATH:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    rid = doc.get("request_id") if isinstance(doc, dict) else None
    return rid if isinstance(rid, str) and rid else None


@dataclass(frozen=True)
class Backend:
    service: str
    weight: int


def backends_of(route: dict[str, Any] | None, service: str) -> list[Backend]:
    """The weighted Services a request may go to (the route's first rule, else `service` alone)."""
    if route is None:
        return [Backend(service, 1)]
    rules = route.get("spec", {}).get("rules") or [{}]
    refs = rules[0].get("backendRefs") or []
    return [
        Backend(r["name"], int(r.get("weight", 1))) for r in refs if r.get("kind", "Service") == "Service"
    ]


def ready_endpoints(slices: list[dict[str, Any]], service: str) -> list[tuple[str, int]]:
    """(pod IP, port) of the Service's ready endpoints (ready unset counts as ready, per the API)."""
    found = []
    for s in slices:
        if s["metadata"].get("labels", {}).get(SERVICE_NAME_LABEL) != service:
            continue
        ports = s.get("ports") or []
        # One port, or the one the operator names `http`.
        port = next((p for p in ports if len(ports) == 1 or p.get("name") == "http"), None)
        if port is None:
            continue
        for ep in s.get("endpoints") or []:
            if (ep.get("conditions") or {}).get("ready") is not False:
                found += [(address, int(port["port"])) for address in ep["addresses"][:1]]
    return sorted(found)


class Router:
    """Use as a context manager; `url` is where to send requests."""

    def __init__(self, api: client.ApiClient, namespace: str, name: str, timeout: float = 10) -> None:
        self.namespace, self.name, self.timeout = namespace, name, timeout
        self.by_backend: Counter[str] = Counter()
        self.by_endpoint: Counter[str] = Counter()
        self.by_code: Counter[int] = Counter()
        # Feedback routed to the endpoint that answered ("remembered") or picked as usual ("unknown").
        self.feedback: Counter[str] = Counter()
        self.affinity = Affinity()
        self._lock = threading.Lock()
        custom = client.CustomObjectsApi(api)
        self._routes = Informer(
            api,
            custom.list_namespaced_custom_object,
            group=GATEWAY_GROUP,
            version=GATEWAY_VERSION,
            namespace=namespace,
            plural="httproutes",
            field_selector=f"metadata.name={name}",
        )
        self._slices = Informer(
            api, client.DiscoveryV1Api(api).list_namespaced_endpoint_slice, namespace=namespace
        )
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="router", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._routes.start()
        self._slices.start()
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._routes.stop()
        self._slices.stop()

    def __enter__(self) -> Router:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset_counters(self) -> None:
        with self._lock:
            self.by_backend.clear()
            self.by_endpoint.clear()
            self.by_code.clear()
            self.feedback.clear()

    def pick(self) -> tuple[str, tuple[str, int] | None] | None:
        """(backend Service, endpoint or None when it has no ready one); None when all weights are 0."""
        backends = [b for b in backends_of(self._routes.get(self.name), self.name) if b.weight > 0]
        if not backends:
            return None
        backend = random.choices(backends, weights=[b.weight for b in backends])[0]
        endpoints = ready_endpoints(self._slices.items(), backend.service)
        return backend.service, (random.choice(endpoints) if endpoints else None)

    def route(self, method: str, path: str, body: bytes) -> tuple[str, tuple[str, int] | None] | None:
        """Where a request goes: feedback to the endpoint that answered its request id, else pick()."""
        rid = feedback_request_id(method, path, body)
        if rid is not None:
            remembered = self.affinity.lookup(rid)
            with self._lock:
                self.feedback["remembered" if remembered else "unknown"] += 1
            if remembered is not None:
                return remembered
        return self.pick()

    def count(self, backend: str | None, endpoint: str | None, code: int) -> None:
        with self._lock:
            if backend is not None:
                self.by_backend[backend] += 1
            if endpoint is not None:
                self.by_endpoint[endpoint] += 1
            self.by_code[code] += 1


def _handler(router: Router) -> type[BaseHTTPRequestHandler]:
    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for clients, like a real gateway

        def _reply(self, code: int, body: bytes, headers: list[tuple[str, str]] | None = None) -> None:
            self.send_response(code)
            for key, value in headers or [("Content-Type", "text/plain")]:
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            picked = router.route(self.command, self.path, body)
            if picked is None:
                router.count(None, None, 500)
                return self._reply(500, b"all backendRefs have weight 0\n")
            backend, endpoint = picked
            if endpoint is None:
                router.count(backend, None, 503)
                return self._reply(503, f"no ready endpoint for Service {backend}\n".encode())
            address, port = loopback(endpoint[0]), endpoint[1]
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn = http.client.HTTPConnection(address, port, timeout=router.timeout)
            try:
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            except OSError as err:
                router.count(backend, f"{endpoint[0]}:{port}", 502)
                return self._reply(502, f"{backend} {endpoint[0]}: {err}\n".encode())
            finally:
                conn.close()
            router.count(backend, f"{endpoint[0]}:{port}", answer.status)
            rid = answer.getheader("x-request-id")
            if rid:
                router.affinity.remember(rid, backend, endpoint)
            self._reply(answer.status, data, answer.getheaders())

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: counters say what happened."""

    return Proxy
