"""Pod discovery for Debian's Prometheus, which is built without `kubernetes_sd_configs`.

Debian's package (2.42, bookworm) leaves Kubernetes service discovery out: a config with
`kubernetes_sd_configs` is refused ("field kubernetes_sd_configs not found"). This serves
the same targets over Prometheus' generic HTTP service discovery (`http_sd_configs`): it
lists pods from the API server on each refresh and describes them with the labels the
Kubernetes discovery's `role: pod` gives (`__meta_kubernetes_pod_label_<name>`,
`__meta_kubernetes_pod_container_port_name`, ...), one target per container port. So the
relabelling (localworld.prometheus) is the one a real cluster's Prometheus runs.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

META = "__meta_kubernetes_"


def sanitize(name: str) -> str:
    """Label names as Prometheus' discovery writes them: anything else than [a-zA-Z0-9_] -> _."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def _ready(pod: dict[str, Any]) -> str:
    for cond in pod.get("status", {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return str(cond["status"]).lower()
    return "unknown"


def pod_labels(pod: dict[str, Any]) -> dict[str, str]:
    """The labels of `role: pod` shared by all of a pod's targets."""
    meta, spec, status = pod["metadata"], pod["spec"], pod.get("status") or {}
    labels = {
        f"{META}namespace": meta["namespace"],
        f"{META}pod_name": meta["name"],
        f"{META}pod_uid": meta["uid"],
        f"{META}pod_ip": status.get("podIP", ""),
        f"{META}pod_host_ip": status.get("hostIP", ""),
        f"{META}pod_node_name": spec.get("nodeName", ""),
        f"{META}pod_phase": status.get("phase", ""),
        f"{META}pod_ready": _ready(pod),
    }
    for kind in ("label", "annotation"):
        for key, value in (meta.get(f"{kind}s") or {}).items():
            labels[f"{META}pod_{kind}_{sanitize(key)}"] = value
            labels[f"{META}pod_{kind}present_{sanitize(key)}"] = "true"
    for owner in meta.get("ownerReferences") or []:
        if owner.get("controller"):
            labels[f"{META}pod_controller_kind"] = owner["kind"]
            labels[f"{META}pod_controller_name"] = owner["name"]
    return labels


def target_groups(pod: dict[str, Any]) -> list[dict[str, Any]]:
    """One group per container port (a container without ports: the bare pod IP)."""
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return []  # like the Kubernetes discovery: no address yet, no target
    shared = pod_labels(pod)
    groups = []
    for container in pod["spec"]["containers"]:
        base = {
            **shared,
            f"{META}pod_container_name": container["name"],
            f"{META}pod_container_image": container.get("image", ""),
            f"{META}pod_container_init": "false",
        }
        for port in container.get("ports") or [None]:
            labels = dict(base)
            address = ip
            if port is not None:
                address = f"{ip}:{port['containerPort']}"
                labels[f"{META}pod_container_port_name"] = port.get("name", "")
                labels[f"{META}pod_container_port_number"] = str(port["containerPort"])
                labels[f"{META}pod_container_port_protocol"] = port.get("protocol", "TCP")
            groups.append({"targets": [address], "labels": labels})
    return groups


class PodDiscovery:
    """An HTTP SD endpoint on loopback: GET / returns every pod's target groups, fresh each time."""

    def __init__(self, api: client.ApiClient) -> None:
        core = client.CoreV1Api(api)

        def listing() -> list[dict[str, Any]]:
            pods = api.sanitize_for_serialization(core.list_pod_for_all_namespaces())  # type: ignore[no-untyped-call]
            return [g for pod in pods["items"] for g in target_groups(pod)]

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(listing))
        self._thread = threading.Thread(target=self._server.serve_forever, name="pod-discovery", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(listing: Callable[[], list[dict[str, Any]]]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                body, code = json.dumps(listing()).encode(), 200
            except Exception as err:  # Prometheus keeps the last good targets on an error
                body, code = str(err).encode(), 500
            try:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # Prometheus stopped waiting (a busy machine); it asks again within a second

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: Prometheus asks every second."""

    return Handler
