"""The `gatewayAPI` router, pure: HTTPRoute backendRef weights between `<name>-stable` and `<name>-canary`.

Two cases (the shell, `kube/routes.py`, does the I/O):
- The route does not exist and `spec.traffic.parentRefs` is set: modelship creates it
  (owned by the ModelDeployment) with one rule whose backendRefs are the two Services.
- The route exists and belongs to someone else: modelship touches only the rule it
  manages, the first one with a backendRef to `<name>`, `<name>-stable` or
  `<name>-canary`, and replaces that rule's backendRefs; other rules, matches,
  filters and parentRefs stay as the user wrote them.

Weights are integers 0..100 summing to 100 (Gateway API weights are relative; 0 sends
nothing). The shell reads the route before each pass; `traffic_condition` turns what it
read into the `TrafficRouted` condition, and the engine completes a weight step only once
the route shows its weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelship import api
from modelship.api import ConditionValue
from modelship.core import manifests
from modelship.core.manifests import Manifest, Owner

GROUP_VERSION = "gateway.networking.k8s.io/v1"


def weights(owner_name: str, canary_weight: int) -> dict[str, int]:
    return {f"{owner_name}-stable": 100 - canary_weight, f"{owner_name}-canary": canary_weight}


def backend_refs(wanted: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {"group": "", "kind": "Service", "name": name, "port": manifests.SERVICE_PORT, "weight": weight}
        for name, weight in wanted.items()
    ]


def route(owner: Owner, name: str, parent_refs: list[api.ParentRef], wanted: dict[str, int]) -> Manifest:
    """The HTTPRoute modelship creates when none exists."""
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "HTTPRoute",
        "metadata": {
            "name": name,
            "namespace": owner.namespace,
            "labels": {**manifests.MANAGED_BY, manifests.MODEL_LABEL: owner.name},
            "ownerReferences": [manifests.owner_reference(owner)],
        },
        "spec": {
            "parentRefs": [api.dump(p) for p in parent_refs],
            "rules": [{"backendRefs": backend_refs(wanted)}],
        },
    }


def managed_rule(obj: dict[str, Any], owner_name: str) -> int | None:
    """Index of the rule modelship manages in a user's route, or None."""
    ours = {owner_name, f"{owner_name}-stable", f"{owner_name}-canary"}
    for index, rule in enumerate(obj.get("spec", {}).get("rules") or []):
        if any(ref.get("name") in ours for ref in rule.get("backendRefs") or []):
            return index
    return None


def read_weights(obj: dict[str, Any], owner_name: str) -> dict[str, int] | None:
    """The weights the managed rule gives our two Services (a missing weight is Gateway API's 1)."""
    index = managed_rule(obj, owner_name)
    if index is None:
        return None
    refs = obj["spec"]["rules"][index].get("backendRefs") or []
    return {ref["name"]: ref.get("weight", 1) for ref in refs if ref.get("kind", "Service") == "Service"}


def traffic_condition(route_name: str, wanted: dict[str, int], read: dict[str, int] | None) -> ConditionValue:
    """`TrafficRouted` from what the route showed when the pass began."""
    if read is None:
        return (
            "False",
            "RuleNotFound",
            f"HTTPRoute {route_name} has no rule with a backendRef to {', '.join(wanted)}",
        )
    if read != wanted:
        message = f"HTTPRoute {route_name} routes {shown(read)}; modelship asked for {shown(wanted)}"
        return ("False", "WeightMismatch", message)
    return ("True", "WeightsSet", f"HTTPRoute {route_name}: {shown(read)}")


def shown(weights: Mapping[str, int]) -> str:
    """Weights as a person reads them: `fraud-stable=80, fraud-canary=20`."""
    return ", ".join(f"{k}={v}" for k, v in weights.items())


MISSING: ConditionValue = (
    "False",
    "HTTPRouteMissing",
    "spec.traffic.httpRoute does not exist and spec.traffic.parentRefs is not set, "
    "so modelship cannot create it",
)
