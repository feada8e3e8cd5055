"""The local world on a cluster with a real node: the model images on the node, Prometheus, and
Traefik as the Gateway API data plane.

What the e2e fixture and the demo start on top of the local control plane, and stop in reverse
order. Pods run for real on the node (devcluster.realnode); a namespace gets there through
`pin_namespace`. Traffic reaches a model through Traefik: `expose` creates an HTTPRoute with a
hostname of its own on the world's Gateway, and modelship manages that route's weights.

For fault tests, `restart(component)` (or `stop_component` and `start_component` apart) stops
Prometheus, Traefik or any of the cluster's components by its pid and starts it again with the
same arguments and ports.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster import nodeconfig, traefik
from devcluster.cluster import LocalCluster
from imagebuild.build import OPERATOR, SERVING
from imagebuild.build import build as build_image
from localworld.demoimages import ModelImage, build_model_images
from localworld.prometheus import DEFAULT_INTERVAL, Prometheus
from modelship.core.manifests import SERVICE_PORT

GATEWAY_NAMESPACE = "modelship-gateway"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"
HOSTNAME_SUFFIX = "modelship.test"
COMPONENTS = ("prometheus", "traefik")  # the world's own; the rest are the cluster's


@dataclass(frozen=True)
class Endpoint:
    """Where a load generator sends a model's traffic: Traefik's entrypoint, with the route's host."""

    url: str
    host: str

    def answers(self) -> bool:
        """Whether a model answers `/readyz` through Traefik on this route now."""
        request = urllib.request.Request(f"{self.url}/readyz", headers={"Host": self.host})
        try:
            with urllib.request.urlopen(request, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False


def route_host(namespace: str, name: str) -> str:
    return f"{name}.{namespace}.{HOSTNAME_SUFFIX}"


def http_route(namespace: str, name: str, backends: dict[str, int]) -> dict[str, Any]:
    """A route owned by the world (as a platform team would own it): one hostname, on the world's
    Gateway, one rule with `backends` (Service -> weight)."""
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "parentRefs": [{"name": traefik.GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE}],
            "hostnames": [route_host(namespace, name)],
            "rules": [
                {
                    "backendRefs": [
                        {"kind": "Service", "name": service, "port": SERVICE_PORT, "weight": weight}
                        for service, weight in backends.items()
                    ]
                }
            ],
        },
    }


def pin_namespace(api: client.ApiClient, namespace: str, restricted: bool = True) -> None:
    """Send the namespace's pods to the real node, and (by default) enforce Pod Security
    `restricted` there, as a production namespace would."""
    labels = {"pod-security.kubernetes.io/enforce": "restricted"} if restricted else {}
    client.CoreV1Api(api).patch_namespace(
        namespace, {"metadata": {"annotations": nodeconfig.namespace_pinning(), "labels": labels}}
    )


@dataclass
class LocalWorld:
    cluster: LocalCluster
    api: client.ApiClient
    state_dir: Path
    scrape_interval: str = DEFAULT_INTERVAL
    images: dict[str, ModelImage] = field(default_factory=dict)  # by name; refs as pods name them
    operator_image: str = ""
    _prometheus: Prometheus | None = None
    _gateway: traefik.Traefik | None = None

    @property
    def prometheus(self) -> Prometheus:
        assert self._prometheus is not None, "LocalWorld.start() first"
        return self._prometheus

    @property
    def gateway(self) -> traefik.Traefik:
        assert self._gateway is not None, "LocalWorld.start() first"
        return self._gateway

    def image(self, name: str) -> ModelImage:
        if name not in self.images:
            raise KeyError(f"no model image {name!r}; known: {', '.join(sorted(self.images))}")
        return self.images[name]

    def start(self) -> None:
        node = self.cluster.node
        if node is None:
            raise RuntimeError(
                "the local world needs a cluster with a real node (LocalCluster(real_node=True))"
            )
        try:
            serving = build_image(SERVING, sbom=False, log=False)
            operator = build_image(OPERATOR, sbom=False, log=False)
            models = build_model_images(serving.ref)
            refs = node.load([operator.ref, *(m.ref for m in models.values())])
            self.operator_image = refs[operator.ref]
            self.images = {n: dataclasses.replace(m, ref=refs[m.ref]) for n, m in models.items()}
            # On the node's address: the operator, when it runs as a pod, queries it from there.
            self._prometheus = Prometheus(
                self.api, self.state_dir / "prometheus", self.scrape_interval, host=nodeconfig.NODE_IP
            )
            self._prometheus.start()
            self._gateway = traefik.Traefik()
            self._gateway.start(
                self.cluster.kubeconfig, traefik.binary(traefik.build()), self.state_dir / "traefik"
            )
            client.CoreV1Api(self.api).create_namespace(
                client.V1Namespace(metadata=client.V1ObjectMeta(name=GATEWAY_NAMESPACE))
            )
            self._gateway.apply_gateway(self.api, GATEWAY_NAMESPACE)
        except BaseException:
            self.stop()
            raise

    def expose(self, namespace: str, name: str, backends: dict[str, int] | None = None) -> Endpoint:
        """Create the HTTPRoute `name`. By default it is ModelDeployment `name`'s route
        (spec.traffic.httpRoute: name), all traffic to `<name>-stable` until modelship sets weights."""
        backends = backends or {f"{name}-stable": 100, f"{name}-canary": 0}
        client.CustomObjectsApi(self.api).create_namespaced_custom_object(
            GATEWAY_GROUP, GATEWAY_VERSION, namespace, "httproutes", http_route(namespace, name, backends)
        )
        return Endpoint(self.gateway.url, route_host(namespace, name))

    def gateway_errors(self, namespace: str) -> list[str]:
        """What Traefik answered with a 5xx on `namespace`'s routes so far, a line each: when, the
        status, the backend's own (0: Traefik answered itself, with no backend), the router and
        the backend service it chose."""
        log = self.gateway.error_log
        lines = log.read_text().splitlines() if log.exists() else []
        out = []
        for entry in map(json.loads, lines):
            if f"httproute-{namespace}-" in entry.get("RouterName", ""):
                out.append(
                    f"{entry['StartUTC'][11:23]} {entry['DownstreamStatus']} origin {entry['OriginStatus']}"
                    f" {entry['RouterName'].split('@')[0]} {entry.get('ServiceName', '-')}"
                )
        return out

    def stop(self) -> None:
        if self._gateway is not None:
            self._gateway.stop()
        if self._prometheus is not None:
            self._prometheus.stop()

    # -- one component, for fault tests ----------------------------------------

    @property
    def components(self) -> tuple[str, ...]:
        return COMPONENTS + self.cluster.components

    def stop_component(self, name: str, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """Stop Prometheus, Traefik or a cluster component by its pid (`sig`, then SIGKILL after
        `timeout` s); it stays down until start_component(name)."""
        if name == "prometheus":
            self.prometheus.stop_process(timeout, sig)
        elif name == "traefik":
            self.gateway.stop_process(timeout, sig)
        elif name in self.cluster.components:
            self.cluster.stop_component(name, timeout, sig)
        else:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(self.components)}")

    def start_component(self, name: str, timeout: float = 60) -> None:
        """Start a stopped component again, same arguments and ports; return once it is healthy."""
        if name == "prometheus":
            self.prometheus.start_process(timeout)
        elif name == "traefik":
            self.gateway.start_process(timeout)
        elif name in self.cluster.components:
            self.cluster.start_component(name, timeout)
        else:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(self.components)}")

    def restart(self, name: str, timeout: float = 60, sig: int = signal.SIGTERM) -> None:
        """stop_component, then start_component: the same process again, on the same ports."""
        self.stop_component(name, sig=sig)
        self.start_component(name, timeout)

    def __enter__(self) -> LocalWorld:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
