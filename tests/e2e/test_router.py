"""The weighted router: HTTPRoute weights and EndpointSlices from the API server, real servers behind."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from kubernetes import client

from localworld import load
from localworld.catalogue import Catalogue
from localworld.podrunner import PodRunner
from localworld.prometheus import Prometheus
from localworld.router import GATEWAY_GROUP, GATEWAY_VERSION, Router, ready_endpoints

from .helpers import eventually, is_ready, pods, service, serving_deployment

pytestmark = pytest.mark.e2e

PREDICT = json.dumps({"instances": [[10.5, 6.1, 0.2, -1.3]]}).encode()


def http_route(name: str, weights: dict[str, int]) -> dict[str, object]:
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "rules": [{"backendRefs": [{"name": s, "port": 80, "weight": w} for s, w in weights.items()]}]
        },
    }


def deploy_revision(
    api_client: client.ApiClient,
    namespace: str,
    catalogue: Catalogue,
    name: str,
    revision: str,
    replicas: int,
) -> None:
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace, serving_deployment(name, catalogue, replicas, model="risk", revision=revision)
    )
    client.CoreV1Api(api_client).create_namespaced_service(namespace, service(name, revision))


def wait_routable(api_client: client.ApiClient, namespace: str, counts: dict[str, int]) -> None:
    """Pods Ready and their EndpointSlices listing them ready, per Service."""
    core, discovery = client.CoreV1Api(api_client), client.DiscoveryV1Api(api_client)

    def routable() -> bool:
        slices = api_client.sanitize_for_serialization(discovery.list_namespaced_endpoint_slice(namespace))[
            "items"
        ]
        return all(
            sum(is_ready(p) for p in pods(core, namespace, name)) == n
            and len(ready_endpoints(slices, name)) == n
            for name, n in counts.items()
        )

    try:
        eventually(f"ready endpoints {counts}", routable, timeout=120)
    except TimeoutError as err:  # say which pod is stuck where (a flake seen on a busy machine)
        report = [
            f"{p.metadata.name} ip={p.status.pod_ip} phase={p.status.phase} ready={is_ready(p)} "
            f"containers={[(c.ready, c.state.to_dict()) for c in p.status.container_statuses or []]}"
            for name in counts
            for p in pods(core, namespace, name)
        ]
        raise TimeoutError("\n".join([str(err), *report])) from None


def test_weight_20_route_under_steady_load_splits_20_percent_and_prometheus_agrees(
    api_client: client.ApiClient,
    namespace: str,
    catalogue: Catalogue,
    pod_runner: PodRunner,
    prometheus: Prometheus,
    make_router: Callable[[str, str], Router],
) -> None:
    deploy_revision(api_client, namespace, catalogue, "risk-stable", "risk-r1", replicas=2)
    deploy_revision(api_client, namespace, catalogue, "risk-canary", "risk-r2", replicas=1)
    client.CustomObjectsApi(api_client).create_namespaced_custom_object(
        GATEWAY_GROUP,
        GATEWAY_VERSION,
        namespace,
        "httproutes",
        http_route("risk", {"risk-stable": 80, "risk-canary": 20}),
    )
    wait_routable(api_client, namespace, {"risk-stable": 2, "risk-canary": 1})
    router = make_router(namespace, "risk")

    codes = load.steady(f"{router.url}/predict", PREDICT, rate=50, duration=20)

    assert codes == {200: 1000}
    canary_share = router.by_backend["risk-canary"] / sum(router.by_backend.values())
    assert 0.15 <= canary_share <= 0.25, router.by_backend
    assert len(router.by_endpoint) == 3  # every ready pod served

    # Prometheus counted the same requests per revision (scraped within a few 2 s intervals).
    expected = {"risk-r1": router.by_backend["risk-stable"], "risk-r2": router.by_backend["risk-canary"]}

    def per_revision() -> dict[str, int]:
        query = f'sum by (revision) (modelserver_requests_total{{namespace="{namespace}", route="/predict"}})'
        return {s["metric"]["revision"]: int(float(s["value"][1])) for s in prometheus.query(query)}

    eventually(
        f"Prometheus per-revision requests == {expected}", lambda: per_revision() == expected, timeout=20
    )


def test_weight_change_takes_effect_within_a_second(
    api_client: client.ApiClient,
    namespace: str,
    catalogue: Catalogue,
    pod_runner: PodRunner,
    make_router: Callable[[str, str], Router],
) -> None:
    deploy_revision(api_client, namespace, catalogue, "a", "rev-a", replicas=1)
    deploy_revision(api_client, namespace, catalogue, "b", "rev-b", replicas=1)
    custom = client.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(
        GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", http_route("ab", {"a": 100, "b": 0})
    )
    wait_routable(api_client, namespace, {"a": 1, "b": 1})
    router = make_router(namespace, "ab")
    assert load.steady(f"{router.url}/predict", PREDICT, rate=20, duration=1) == {200: 20}
    assert router.by_backend == {"a": 20}

    custom.patch_namespaced_custom_object(
        GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", "ab", http_route("ab", {"a": 0, "b": 100})
    )
    time.sleep(1)
    router.reset_counters()
    assert load.steady(f"{router.url}/predict", PREDICT, rate=20, duration=1) == {200: 20}
    assert router.by_backend == {"b": 20}


def test_without_a_route_the_service_spreads_uniformly_over_ready_endpoints(
    api_client: client.ApiClient,
    namespace: str,
    catalogue: Catalogue,
    pod_runner: PodRunner,
    make_router: Callable[[str, str], Router],
) -> None:
    deploy_revision(api_client, namespace, catalogue, "risk", "risk-r1", replicas=2)
    client.AppsV1Api(api_client).create_namespaced_deployment(
        namespace,
        serving_deployment("broken", catalogue, 1, sha256="0" * 64, model="risk", revision="risk-r1"),
    )
    wait_routable(api_client, namespace, {"risk": 2})
    router = make_router(namespace, "risk")

    codes = load.steady(f"{router.url}/predict", PREDICT, rate=50, duration=4)

    assert codes == {200: 200}
    # The not-ready pod (checksum refused) behind the same Service gets nothing; the two ready
    # ones share the load (binomial(200, 1/2): 70..130 is beyond 4 standard deviations).
    assert len(router.by_endpoint) == 2
    assert all(70 <= n <= 130 for n in router.by_endpoint.values()), router.by_endpoint
