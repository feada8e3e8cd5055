"""The routers' I/O: read the route object (and its backends' ready endpoints) before a pass, write
the weights a pass decided. The `gatewayAPI` router's HTTPRoute is here; the `istio` router's
VirtualService is in `kube/virtualservices.py`, chosen by `spec.traffic.router`.

The rules (which route, which rule, what weights) are in `modelship.core.gateway`; whether the
route shows what a step asked for is the engine's judgement (`Observations.route`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelship import api
from modelship.core import engine, gateway, shadow
from modelship.core.manifests import Owner
from modelship.kube import virtualservices
from modelship.kube.observe import owned_by
from modelship.kube.storage import Forbidden, Storage, endpointslices_path, route_path

# The label the EndpointSlice controller puts on a Service's slices.
SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True)
class Read:
    """The route as one pass read it: what the engine is told, and the object the write starts from."""

    observation: engine.RouteObservation
    obj: dict[str, Any] | None


def routed(spec: api.ModelDeploymentSpec) -> str | None:
    """The HTTPRoute's name when the gatewayAPI router manages one."""
    return spec.traffic.http_route if spec.traffic.router == "gatewayAPI" else None


def backends(owner_name: str) -> list[str]:
    """Every Service a route of ours may send to: stable, canary and an experiment's challenger."""
    return [*gateway.weights(owner_name, 0), gateway.challenger_service(owner_name)]


def read(storage: Storage, owner: Owner, spec: api.ModelDeploymentSpec) -> Read | None:
    """The route and the weights of the rule modelship manages (None: no route to read)."""
    ref = spec.traffic.virtual_service
    if spec.traffic.router == "istio" and ref is not None:
        endpoints = ready_endpoints(storage, owner.namespace, backends(owner.name))
        return Read(*virtualservices.read(storage, owner, ref, endpoints, spec.traffic.session_affinity))
    name = routed(spec)
    if not name:
        return None
    obj = storage.get(route_path(owner.namespace, name))
    weights = gateway.read_weights(obj, owner.name) if obj is not None else None
    headers = gateway.read_headers(obj, owner.name) if obj is not None else {}
    affinity = spec.traffic.session_affinity
    sessions = gateway.read_sessions(obj, owner.name, affinity) if obj is not None else {}
    endpoints = ready_endpoints(storage, owner.namespace, backends(owner.name))
    observation = engine.RouteObservation(
        route=name,
        weights=weights or None,
        exists=obj is not None,
        endpoints=endpoints,
        accepted=gateway.accepted(obj) if obj is not None else None,
        headers=headers,
        shadow=shadow.read(obj, owner.name) if obj is not None else None,
        sessions=sessions,
    )
    return Read(observation, obj)


def ready_endpoints(
    storage: Storage, namespace: str, services: Iterable[str]
) -> dict[str, frozenset[str]] | None:
    """The ready pods each Service's EndpointSlices list, by name; None when the operator may not
    list EndpointSlices (then weights move on the Deployments' word alone)."""
    listed: dict[str, set[str]] = {name: set() for name in services}
    selector = f"{SERVICE_NAME_LABEL} in ({','.join(sorted(listed))})"
    try:
        slices = storage.items(endpointslices_path(namespace), labelSelector=selector)
    except Forbidden:
        return None
    for piece in slices:
        pods = listed.get(piece["metadata"].get("labels", {}).get(SERVICE_NAME_LABEL, ""))
        for endpoint in piece.get("endpoints") or []:
            ref = endpoint.get("targetRef") or {}
            # The API says an unset `ready` means ready.
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            if pods is not None and ready and ref.get("kind") == "Pod":
                pods.add(ref.get("name", ""))
    return {name: frozenset(pods) for name, pods in listed.items()}


def write(
    storage: Storage, owner: Owner, spec: api.ModelDeploymentSpec, route: engine.Route, seen: Read
) -> bool:
    """Set the managed rule's backend weights, the header rules and the session rules. A route
    modelship owns (or creates) is applied whole; in someone else's only the managed rule and
    modelship's header and session rules change, and only if the rules are still what this pass
    read. Returns whether anything was written. Nothing is read back: the next pass reads the route."""
    if spec.traffic.router == "istio" and spec.traffic.virtual_service is not None:
        affinity = spec.traffic.session_affinity
        return virtualservices.write(storage, owner, spec.traffic.virtual_service, route, seen.obj, affinity)
    wanted = dict(route.weights)
    affinity, pinned = spec.traffic.session_affinity, route.sessions
    current = seen.obj
    path = route_path(owner.namespace, seen.observation.route)
    if current is None or owned_by(current, owner.uid):
        parents = spec.traffic.parent_refs
        if not parents and current is not None:
            parents = [api.ParentRef.model_validate(p) for p in current["spec"].get("parentRefs") or []]
        if not parents:
            return False  # the engine reports it (HTTPRouteMissing)
        storage.apply(
            shadow.marked(
                gateway.route(
                    owner, seen.observation.route, parents, wanted, route.headers, affinity, pinned
                ),
                owner.name,
                route.shadow,
            )
        )
        return True
    rules = gateway.with_headers(current, owner.name, wanted, route.headers, affinity, pinned)
    rules = shadow.mark(rules, owner.name, route.shadow) if rules is not None else None
    if rules is None or rules == current["spec"]["rules"]:
        return False  # no rule of ours (RuleNotFound), or nothing to change
    return storage.replace_if_unchanged(path, "/spec/rules", current["spec"]["rules"], rules)
