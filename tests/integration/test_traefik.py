"""Traefik as the Gateway API data plane of the local cluster: it programs our Gateway and splits
real requests by an HTTPRoute's backendRef weights.

The backends are two tiny HTTP servers on this machine, reached through Services without a
selector and hand-written EndpointSlices. The API server refuses loopback addresses in an
EndpointSlice, so the servers listen on a /32 of our own added to `lo` (removed afterwards).
"""

from __future__ import annotations

import collections
import json
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client

from devcluster import traefik
from devcluster.cluster import ExistingCluster, wait_for

pytestmark = pytest.mark.integration

# Away from the node (10.76/10.77), podman (10.88), services (10.96) and KWOK pods (10.128-254).
BACKEND_IP = "10.74.0.1"
ROUTE = "split"
REQUESTS = 500
TOLERANCE = 0.06
GW_API = ("gateway.networking.k8s.io", "v1")


@pytest.fixture(scope="module")
def traefik_binary() -> Path:
    return traefik.binary(traefik.build())


@pytest.fixture
def backend_ip() -> Iterator[str]:
    """BACKEND_IP on `lo` for the test; removed afterwards whatever happens."""
    shown = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lo"], capture_output=True, text=True)
    if f" {BACKEND_IP}/" in shown.stdout:
        pytest.fail(f"{BACKEND_IP} is already on lo (someone else's, or a leftover): not touching it")
    subprocess.run(["ip", "addr", "add", f"{BACKEND_IP}/32", "dev", "lo"], check=True)
    try:
        yield BACKEND_IP
    finally:
        subprocess.run(["ip", "addr", "del", f"{BACKEND_IP}/32", "dev", "lo"], check=False)


class NamedServer(ThreadingHTTPServer):
    """Answers every GET with its name."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], name: str) -> None:
        super().__init__(address, NameHandler)
        self.name = name


class NameHandler(BaseHTTPRequestHandler):
    server: NamedServer

    def do_GET(self) -> None:
        body = self.server.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def backends(backend_ip: str) -> Iterator[dict[str, int]]:
    """Two HTTP servers answering with their name; name -> port."""
    servers: list[NamedServer] = []
    try:
        for name in ("a", "b"):
            server = NamedServer((backend_ip, 0), name)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        yield {s.name: int(s.server_address[1]) for s in servers}
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture
def running(cluster: ExistingCluster, traefik_binary: Path, tmp_path: Path) -> Iterator[traefik.Traefik]:
    proc = traefik.Traefik()
    proc.start(cluster.kubeconfig, traefik_binary, tmp_path / "traefik")
    try:
        yield proc
    finally:
        proc.stop()


def log_tail(proc: traefik.Traefik, lines: int = 40) -> str:
    try:
        return "\n".join(proc.log_file.read_text().splitlines()[-lines:])
    except OSError as err:
        return f"(no log: {err})"


def expose(api: client.ApiClient, namespace: str, name: str, ip: str, port: int) -> None:
    """A Service without a selector and its EndpointSlice pointing at ip:port."""
    client.CoreV1Api(api).create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80, target_port=port)]),
        ),
    )
    client.DiscoveryV1Api(api).create_namespaced_endpoint_slice(
        namespace,
        client.V1EndpointSlice(
            metadata=client.V1ObjectMeta(
                name=f"{name}-1",
                labels={
                    "kubernetes.io/service-name": name,
                    "endpointslice.kubernetes.io/managed-by": "modelship-tests",
                },
            ),
            address_type="IPv4",
            endpoints=[client.V1Endpoint(addresses=[ip], conditions=client.V1EndpointConditions(ready=True))],
            # Traefik matches the slice's port to the Service's by name.
            ports=[client.DiscoveryV1EndpointPort(name="http", port=port, protocol="TCP")],
        ),
    )


def http_route(namespace: str, weights: dict[str, int]) -> dict[str, Any]:
    return {
        "apiVersion": "/".join(GW_API),
        "kind": "HTTPRoute",
        "metadata": {"name": ROUTE, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": traefik.GATEWAY_NAME, "namespace": namespace}],
            "rules": [{"backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in weights.items()]}],
        },
    }


# Straight to Traefik, whatever http_proxy says.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str) -> str:
    try:
        with _opener.open(url, timeout=5) as resp:
            return f"{resp.status} {resp.read().decode()}"
    except urllib.error.HTTPError as err:
        return f"{err.code}"
    except OSError as err:
        return f"error {err}"


def split(url: str, n: int = REQUESTS) -> collections.Counter[str]:
    return collections.Counter(get(url) for _ in range(n))


def route_accepted(objects: client.CustomObjectsApi, namespace: str) -> Callable[[], bool]:
    def probe() -> bool:
        route = cast(
            "dict[str, Any]", objects.get_namespaced_custom_object(*GW_API, namespace, "httproutes", ROUTE)
        )
        generation = route["metadata"]["generation"]
        for parent in (route.get("status") or {}).get("parents") or []:
            conds = {c["type"]: c for c in parent.get("conditions") or []}
            if all(
                conds.get(t, {}).get("status") == "True" and conds[t].get("observedGeneration") == generation
                for t in ("Accepted", "ResolvedRefs")
            ):
                return True
        return False

    return probe


def test_gateway_is_programmed_and_weights_split_requests(
    api_client: client.ApiClient,
    namespace: str,
    running: traefik.Traefik,
    backends: dict[str, int],
) -> None:
    gw = running.apply_gateway(api_client, namespace)
    listeners = gw["status"]["listeners"]
    assert [(lst["name"], lst["attachedRoutes"]) for lst in listeners] == [("web", 0)]

    for name, port in backends.items():
        expose(api_client, namespace, name, BACKEND_IP, port)
    objects = client.CustomObjectsApi(api_client)
    objects.create_namespaced_custom_object(
        *GW_API, namespace, "httproutes", http_route(namespace, {"a": 80, "b": 20})
    )
    wait_for("the HTTPRoute Accepted with its refs resolved", route_accepted(objects, namespace))
    wait_for(
        f"both backends answering through Traefik (log: {running.log_file})",
        lambda: {"200 a", "200 b"} <= set(split(running.url, 20)),
    )

    counts = split(running.url)
    assert set(counts) == {"200 a", "200 b"}, (counts, log_tail(running))
    share_a = counts["200 a"] / REQUESTS
    assert abs(share_a - 0.80) <= TOLERANCE, counts

    # Weights 0/100: every request goes to b once Traefik has the new route.
    objects.patch_namespaced_custom_object(
        *GW_API, namespace, "httproutes", ROUTE, http_route(namespace, {"a": 0, "b": 100})
    )
    wait_for("the changed HTTPRoute Accepted", route_accepted(objects, namespace))
    wait_for("only b answering", lambda: set(split(running.url, 20)) == {"200 b"})
    counts = split(running.url)
    assert counts == {"200 b": REQUESTS}, (counts, log_tail(running))
    assert not running.error_log.exists() or not running.error_log.read_text(), "a 5xx was logged"

    # A backend Service that does not exist: Traefik answers 500 itself, and its error log (the
    # access log of 5xx answers) names the route's router and says no backend answered (origin 0).
    objects.patch_namespaced_custom_object(
        *GW_API, namespace, "httproutes", ROUTE, http_route(namespace, {"missing": 100})
    )
    wait_for("Traefik answering 500 for a missing Service", lambda: set(split(running.url, 5)) == {"500"})
    errors = [json.loads(line) for line in running.error_log.read_text().splitlines()]
    assert errors and {e["DownstreamStatus"] for e in errors} == {500}, errors
    assert all(namespace in e["RouterName"] and e["OriginStatus"] == 0 for e in errors), errors[0]
