"""The `istio` router's I/O: read the VirtualService before a pass, write the weights and header
routes a pass decided. The rules (which HTTP routes, what destinations) are in
`modelship.core.istio`; `kube/routes.py` chooses this module by `spec.traffic.router`.

Nothing here watches VirtualServices, so an operator on a cluster without Istio's CRDs runs as
before; a ModelDeployment that asks for `istio` there reads a VirtualService that does not exist
(`TrafficRouted` False) and its create is refused (404), which is retried each pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelship import api
from modelship.core import engine, istio
from modelship.core.manifests import Owner
from modelship.kube.observe import owned_by
from modelship.kube.storage import NotFound, Storage, virtualservice_path


def read(
    storage: Storage,
    owner: Owner,
    ref: api.VirtualServiceRef,
    endpoints: Mapping[str, frozenset[str]] | None,
    affinity: api.SessionAffinity | None = None,
) -> tuple[engine.RouteObservation, dict[str, Any] | None]:
    """What the VirtualService shows (the observation), and the object a write starts from."""
    obj = storage.get(virtualservice_path(owner.namespace, ref.name))
    observation = engine.RouteObservation(
        route=ref.name,
        weights=(istio.read_weights(obj, owner.name, ref.routes) or None) if obj is not None else None,
        exists=obj is not None,
        endpoints=endpoints,
        accepted=istio.reconciled(obj) if obj is not None else None,
        headers=istio.read_headers(obj, owner.name, ref.routes) if obj is not None else {},
        shadow=istio.read_shadow(obj, owner.name, ref.routes) if obj is not None else None,
        sessions=istio.read_sessions(obj, owner.name, ref.routes, affinity) if obj is not None else {},
        kind=istio.KIND,
    )
    return observation, obj


def write(
    storage: Storage,
    owner: Owner,
    ref: api.VirtualServiceRef,
    route: engine.Route,
    current: dict[str, Any] | None,
    affinity: api.SessionAffinity | None = None,
) -> bool:
    """Set the managed HTTP routes' destinations (stamped for `affinity`) and shadow mark, and the
    header and session routes. One modelship owns (or creates) is applied whole; in someone else's
    only the managed routes and modelship's header and session routes change, and only if
    `spec.http` is still what this pass read. Returns whether anything was written."""
    wanted = dict(route.weights)
    if current is None or owned_by(current, owner.uid):
        spec = (current or {}).get("spec") or {}
        hosts = ref.hosts or spec.get("hosts") or []
        if not hosts:
            return False  # the engine reports it (VirtualServiceMissing)
        gateways = ref.gateways or (spec.get("gateways") or [] if not ref.hosts else [])
        manifest = istio.virtual_service(
            owner, ref, hosts, gateways, wanted, route.headers, route.shadow, affinity, route.sessions
        )
        try:
            storage.apply(manifest)
        except NotFound:
            return False  # the API server does not serve networking.istio.io/v1: Istio's CRDs are absent
        return True
    http = istio.with_headers(
        current, owner.name, ref.routes, wanted, route.headers, route.shadow, affinity, route.sessions
    )
    if http is None or http == current["spec"].get("http"):
        return False  # no managed route (RuleNotFound), or nothing to change
    path = virtualservice_path(owner.namespace, ref.name)
    return storage.replace_if_unchanged(path, "/spec/http", current["spec"]["http"], http)
