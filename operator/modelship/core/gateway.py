"""The `gatewayAPI` router, pure: HTTPRoute backendRef weights between `<name>-stable` and `<name>-canary`.

Two cases (the shell, `kube/routes.py`, does the I/O):
- The route does not exist and `spec.traffic.parentRefs` is set: modelship creates it
  (owned by the ModelDeployment) with one rule whose backendRefs are the two Services.
- The route exists and belongs to someone else: modelship touches only the rule it
  manages, the first one with a backendRef to `<name>`, `<name>-stable` or
  `<name>-canary`, and replaces that rule's backendRefs; other rules, matches,
  filters and parentRefs stay as the user wrote them.

Header routes (`setHeaderRoute` steps) are rules of their own, placed before the weighted rule and
named `<name>-header-<route name>`: each sends the requests carrying its headers to
`<name>-canary` alone, whatever the weights. They repeat the weighted rule's matches (its path)
with their headers added, so they take only requests the weighted rule would have taken, and a
gateway ranks them above it (more header matches win among equal paths).

Weights are integers 0..100 summing to 100 (Gateway API weights are relative; 0 sends
nothing). The shell reads the route before each pass; `traffic_condition` turns what it
read into the `TrafficRouted` condition, and the engine completes a weight step only once
the route shows its weights and every gateway that reports on the route (`status.parents`)
has accepted that version of it (`accepted`): a route object says what was asked, a gateway
that is down or lagging still routes the old weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


# A header match as read back and compared: (type, header name, value).
HeaderTriple = tuple[str, str, str]


def header_rule_name(owner_name: str, route_name: str) -> str:
    return f"{owner_name}-header-{route_name}"


def header_triples(route: api.HeaderRoute) -> frozenset[HeaderTriple]:
    return frozenset(
        ("Exact", m.header_name, m.header_value)
        if m.header_value is not None
        else ("RegularExpression", m.header_name, m.regex or "")
        for m in route.match or []
    )


def headers_of(routes: Sequence[api.HeaderRoute]) -> dict[str, frozenset[HeaderTriple]]:
    """Header routes by name, as `read_headers` reads them back from the route."""
    return {r.name: header_triples(r) for r in routes}


def header_rules(
    owner_name: str, routes: Sequence[api.HeaderRoute], base: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One rule per header route: the weighted rule's matches (`base`) with the route's headers
    added (ANDed with theirs), and a single backendRef, `<name>-canary`."""
    rules = []
    for route in routes:
        headers = [{"type": t, "name": n, "value": v} for t, n, v in sorted(header_triples(route))]
        matches = [{**m, "headers": [*(m.get("headers") or []), *headers]} for m in base] or [
            {"headers": headers}
        ]
        rules.append(
            {
                "name": header_rule_name(owner_name, route.name),
                "matches": matches,
                "backendRefs": backend_refs({f"{owner_name}-canary": 1}),
            }
        )
    return rules


def _ours(rule: dict[str, Any], owner_name: str) -> bool:
    """A header rule modelship wrote (by its name)."""
    return str(rule.get("name", "")).startswith(header_rule_name(owner_name, ""))


def read_headers(obj: dict[str, Any], owner_name: str) -> dict[str, frozenset[HeaderTriple]]:
    """The header routes the route shows, by route name: the headers each header rule that sends to
    `<name>-canary` alone adds to the weighted rule's first match (a rule edited to send elsewhere
    is not ours any more)."""
    prefix = header_rule_name(owner_name, "")
    canary = [f"{owner_name}-canary"]
    rules = obj.get("spec", {}).get("rules") or []
    index = managed_rule(obj, owner_name)
    base = _triples(rules[index]) if index is not None else frozenset()
    return {
        rule["name"][len(prefix) :]: _triples(rule) - base
        for rule in rules
        if _ours(rule, owner_name) and [r.get("name") for r in rule.get("backendRefs") or []] == canary
    }


def _triples(rule: dict[str, Any]) -> frozenset[HeaderTriple]:
    """The headers of a rule's first match."""
    first = (rule.get("matches") or [{}])[0]
    return frozenset(
        (h.get("type", "Exact"), h.get("name", ""), h.get("value", "")) for h in first.get("headers") or []
    )


def with_headers(
    obj: dict[str, Any], owner_name: str, wanted: dict[str, int], routes: Sequence[api.HeaderRoute]
) -> list[dict[str, Any]] | None:
    """A user's route's rules with the managed rule's weights set and modelship's header rules (and
    only those) just before it; None without a managed rule."""
    rules = [r for r in obj.get("spec", {}).get("rules") or [] if not _ours(r, owner_name)]
    index = managed_rule({"spec": {"rules": rules}}, owner_name)
    if index is None:
        return None
    managed = {**rules[index], "backendRefs": backend_refs(wanted)}
    ours = header_rules(owner_name, routes, managed.get("matches") or ())
    return [*rules[:index], *ours, managed, *rules[index + 1 :]]


def route(
    owner: Owner,
    name: str,
    parent_refs: list[api.ParentRef],
    wanted: dict[str, int],
    headers: Sequence[api.HeaderRoute] = (),
) -> Manifest:
    """The HTTPRoute modelship creates when none exists (or owns): the header rules, then the weighted one."""
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
            "rules": [*header_rules(owner.name, headers), {"backendRefs": backend_refs(wanted)}],
        },
    }


def managed_rule(obj: dict[str, Any], owner_name: str) -> int | None:
    """Index of the weighted rule modelship manages in a route, or None (never a header rule)."""
    ours = {owner_name, f"{owner_name}-stable", f"{owner_name}-canary"}
    for index, rule in enumerate(obj.get("spec", {}).get("rules") or []):
        if not _ours(rule, owner_name) and any(
            ref.get("name") in ours for ref in rule.get("backendRefs") or []
        ):
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
