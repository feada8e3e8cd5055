"""A fake resource metrics API (`metrics.k8s.io`, what metrics-server serves) for HPA tests: one
HTTPS server on loopback that reports the CPU load a test sets, shared by the pods the HPA asks
about, registered with the API server's aggregator.

The aggregator reaches it through an ExternalName Service naming 127.0.0.1 (Endpoints may not
hold loopback addresses; an ExternalName Service is resolved to its name and the APIService's
port, no kube-proxy needed), and checks its certificate against the APIService's caBundle for the
name `<service>.<namespace>.svc`.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devcluster.cluster import ExistingCluster, wait_for

GROUP, VERSION = "metrics.k8s.io", "v1beta1"
APISERVICE = f"{VERSION}.{GROUP}"
# (namespace, label selector) -> the pods (as the API server lists them) the HPA asks about.
ListPods = Callable[[str, str], list[dict[str, Any]]]


@dataclass
class Load:
    """The CPU a namespace's pods use in all, in millicores, shared evenly by the pods that serve
    (as a load balancer spreads requests over ready endpoints): more pods, less each."""

    millicores: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def set(self, namespace: str, millicores: int) -> None:
        with self.lock:
            self.millicores[namespace] = millicores

    def get(self, namespace: str) -> int | None:
        with self.lock:
            return self.millicores.get(namespace)


def pod_metrics(load: Load, list_pods: ListPods, namespace: str, selector: str) -> list[dict[str, Any]]:
    """PodMetrics for the running pods `selector` matches, as metrics-server reports them: the
    namespace's load shared among those that serve, on each one's first container (the model's)."""
    total = load.get(namespace)
    now = datetime.datetime.now(datetime.UTC)
    pods = [
        p
        for p in list_pods(namespace, selector)
        if p.get("status", {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")
    ]
    serving = [p["metadata"]["name"] for p in pods if _serving(p, now)]
    if total is None or not pods:
        return []
    each = total // max(len(serving), 1)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return [
        {
            "metadata": {"name": p["metadata"]["name"], "namespace": namespace},
            "timestamp": stamp,
            # A short window: the HPA counts a new pod's sample once the pod was ready that long.
            "window": "1s",
            "containers": [
                {"name": c["name"], "usage": {"cpu": f"{cpu if i == 0 else 0}m", "memory": "64Mi"}}
                for i, c in enumerate(p["spec"]["containers"])
            ],
        }
        for p in pods
        for cpu in [each if p["metadata"]["name"] in serving else 0]
    ]


def _serving(pod: dict[str, Any], now: datetime.datetime) -> bool:
    """Ready for 2 s: a Service sends it requests, and the HPA (which skips a sample taken within
    `window` of the pod becoming ready) counts its sample; newer pods get no share of the load."""
    ready = next((c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), None)
    if ready is None or ready["status"] != "True":
        return False
    since = datetime.datetime.fromisoformat(ready["lastTransitionTime"].replace("Z", "+00:00"))
    return now - since >= datetime.timedelta(seconds=2)


def _handler(load: Load, list_pods: ListPods) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            path, query = url.path.rstrip("/"), urllib.parse.parse_qs(url.query)
            prefix = f"/apis/{GROUP}/{VERSION}"
            if path == prefix:  # the aggregator's availability check, and discovery
                resources = [
                    {"name": "pods", "namespaced": True, "kind": "PodMetrics", "verbs": ["get", "list"]}
                ]
                body: dict[str, Any] = {
                    "kind": "APIResourceList",
                    "apiVersion": "v1",
                    "groupVersion": f"{GROUP}/{VERSION}",
                    "resources": resources,
                }
                return self._send(200, body)
            parts = path[len(prefix) :].strip("/").split("/")
            if path.startswith(prefix + "/") and len(parts) == 3 and parts[::2] == ["namespaces", "pods"]:
                selector = query.get("labelSelector", [""])[0]
                items = pod_metrics(load, list_pods, parts[1], selector)
                body = {"kind": "PodMetricsList", "apiVersion": f"{GROUP}/{VERSION}", "metadata": {}}
                return self._send(200, {**body, "items": items})
            self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404})

        def _send(self, code: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the HPA asks every few seconds."""

    return Handler


def _certificates(directory: Path, dns_name: str) -> bytes:
    """A CA and a serving certificate for `dns_name` (written to `directory`); the CA's PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "modelship test metrics CA")])

    def signed(subject: x509.Name, public: ec.EllipticCurvePublicKey, ca: bool) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            sans = [x509.DNSName(dns_name), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(ca_key, hashes.SHA256())

    ca = signed(ca_name, ca_key.public_key(), True)
    server = signed(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-metrics-server")]), key.public_key(), False
    )
    (directory / "tls.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return ca.public_bytes(serialization.Encoding.PEM)


@contextmanager
def resource_metrics(cluster: ExistingCluster, namespace: str, list_pods: ListPods) -> Iterator[Load]:
    """Serve pod metrics to the cluster's HPAs while the block runs; then unregister.

    Only for a cluster whose API server runs on this machine (it dials 127.0.0.1), and which has
    no metrics-server of its own (refused rather than replaced)."""
    existing = cluster.kubectl("get", "apiservice", APISERVICE, "--ignore-not-found", "-o", "name")
    assert not existing.strip(), f"the cluster already serves {APISERVICE}: not replacing it"
    service = "fake-metrics-server"
    load = Load()
    with tempfile.TemporaryDirectory(prefix="modelship-metrics-") as tmp:
        ca = _certificates(Path(tmp), f"{service}.{namespace}.svc")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(Path(tmp) / "tls.crt", Path(tmp) / "tls.key")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(load, list_pods))
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        port = server.server_address[1]
        manifests = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": service, "namespace": namespace},
                "spec": {"type": "ExternalName", "externalName": "127.0.0.1"},
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": APISERVICE},
                "spec": {
                    "group": GROUP,
                    "version": VERSION,
                    "service": {"namespace": namespace, "name": service, "port": port},
                    "caBundle": base64.b64encode(ca).decode(),
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ]
        try:
            cluster.kubectl(
                "apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": manifests})
            )

            def available() -> bool:
                out = cluster.kubectl(
                    "get",
                    "apiservice",
                    APISERVICE,
                    "-o",
                    "jsonpath={.status.conditions[?(@.type=='Available')].status}",
                )
                return out == "True"

            wait_for(f"APIService {APISERVICE} to become Available", available, timeout=60, interval=0.5)
            yield load
        finally:
            cluster.kubectl("delete", "apiservice", APISERVICE, "--ignore-not-found", "--wait=false")
            server.shutdown()
            server.server_close()
