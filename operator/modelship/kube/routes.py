"""The `gatewayAPI` router's I/O: write the HTTPRoute's weights, read them back.

The rules (which route, which rule, what weights) are in `modelship.core.gateway`.
"""

from __future__ import annotations

from modelship import api
from modelship.core import gateway
from modelship.core.manifests import Owner
from modelship.kube.client import Kube, KubeError

JSON_PATCH = "application/json-patch+json"


def route_path(namespace: str, name: str) -> str:
    return f"/apis/gateway.networking.k8s.io/v1/namespaces/{namespace}/httproutes/{name}"


def sync(
    kube: Kube, owner: Owner, spec: api.ModelDeploymentSpec, canary_weight: int
) -> api.ConditionValue | None:
    """Set the route's weights for `canary_weight`; the `TrafficRouted` condition (None: other router)."""
    if spec.traffic.router != "gatewayAPI" or not spec.traffic.http_route:
        return None
    name = spec.traffic.http_route
    path = route_path(owner.namespace, name)
    wanted = gateway.weights(owner.name, canary_weight)
    current = kube.get(path)
    owned = current is not None and any(
        ref.get("uid") == owner.uid for ref in current["metadata"].get("ownerReferences", [])
    )
    if current is None or owned:
        parents = spec.traffic.parent_refs
        if not parents and current is not None:
            parents = [api.ParentRef.model_validate(p) for p in current["spec"].get("parentRefs") or []]
        if not parents:
            return gateway.MISSING
        kube.apply(path, gateway.route(owner, name, parents, wanted))
    else:
        index = gateway.managed_rule(current, owner.name)
        if index is None:
            return gateway.traffic_condition(name, wanted, None)
        if gateway.read_weights(current, owner.name) != wanted:
            pointer = f"/spec/rules/{index}/backendRefs"
            ops = [
                # Only if the rule is still what we read: never overwrite a concurrent edit blindly.
                {"op": "test", "path": pointer, "value": current["spec"]["rules"][index]["backendRefs"]},
                {"op": "replace", "path": pointer, "value": gateway.backend_refs(wanted)},
            ]
            try:
                kube.request("PATCH", path, body=ops, content_type=JSON_PATCH)
            except KubeError as err:
                if err.status not in (409, 422):
                    raise
    read = kube.get(path)
    return gateway.traffic_condition(name, wanted, gateway.read_weights(read, owner.name) if read else None)
