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
the route shows its weights and every gateway that reports on the route (`status.parents`)
has accepted that version of it (`accepted`): a route object says what was asked, a gateway
that is down or lagging still routes the old weights.
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


def accepted(obj: dict[str, Any]) -> bool | None:
    """Whether every gateway that reports on the route has accepted its current spec: each
    `status.parents[]` entry has `Accepted=True` observed at the route's `metadata.generation`.
    None when no gateway reports on it (no controller runs, or none has seen the route yet):
    then there is nothing to wait for but the route itself."""
    parents = (obj.get("status") or {}).get("parents") or []
    if not parents:
        return None
    generation = obj.get("metadata", {}).get("generation")

    def current(parent: dict[str, Any]) -> bool:
        conditions = parent.get("conditions") or []
        return any(
            c.get("type") == "Accepted"
            and c.get("status") == "True"
            and c.get("observedGeneration") == generation
            for c in conditions
        )

    return all(current(p) for p in parents)


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
