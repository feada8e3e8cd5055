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

Sticky sessions (`spec.traffic.sessionAffinity`) work through any Gateway API router, without its
`sessionPersistence` (Traefik does not implement it): each weighted backend's answers are stamped
with its revision (a backendRef ResponseHeaderModifier: `Set-Cookie: <cookie>=<revision>`, or the
header `<header>: <revision>`), and one rule per weighted backend, `<name>-session-stable|canary`,
sends the requests that carry that revision back to that backend. They sit after the header rules
and before the weighted rule; a backend without weight has none, so at abort the canary's sessions
return to stable, and at promotion the promoted revision is the stable one's.

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


def challenger_service(owner_name: str) -> str:
    """The Service in front of an experiment's challenger revision (a third backend while it runs)."""
    return f"{owner_name}-challenger"


def weights(owner_name: str, canary_weight: int, challenger_weight: int = 0) -> dict[str, int]:
    """The managed rule's backends: stable gets what the canary (and a challenger, a third backend
    only while it has weight) leave."""
    rest = 100 - canary_weight - challenger_weight
    split = {f"{owner_name}-stable": rest, f"{owner_name}-canary": canary_weight}
    return split | ({challenger_service(owner_name): challenger_weight} if challenger_weight else {})


def backend_refs(
    wanted: Mapping[str, int], stamps: Mapping[str, dict[str, Any]] = {}
) -> list[dict[str, Any]]:
    """The backendRefs for `wanted` (Service -> weight), each with its session stamp if it has one."""
    return [
        {"group": "", "kind": "Service", "name": name, "port": manifests.SERVICE_PORT, "weight": weight}
        | ({"filters": [stamps[name]]} if name in stamps else {})
        for name, weight in wanted.items()
    ]


# ---- sticky sessions ---------------------------------------------------------------------------


def sessions(owner_name: str, wanted: Mapping[str, int], stable: str, canary: str | None) -> dict[str, str]:
    """Backend Service -> the revision it serves, for each backend with weight: what its answers are
    stamped with and what its session rule matches."""
    serving = {f"{owner_name}-stable": stable} | ({f"{owner_name}-canary": canary} if canary else {})
    return {backend: revision for backend, revision in serving.items() if wanted.get(backend, 0) > 0}


def session_rule_name(owner_name: str, backend: str) -> str:
    return f"{owner_name}-session-{backend.removeprefix(f'{owner_name}-')}"


def session_match(affinity: api.SessionAffinity, revision: str) -> dict[str, str]:
    """The header match of requests that carry `revision`. A cookie is one `name=value` among others
    in the Cookie header; anchored at both ends, the expression reads the same to a gateway that
    matches anywhere in the value (Traefik) and to one that matches the whole value (Envoy).
    Cookie names and revisions need no escaping (letters, digits, `_` and `-`)."""
    if affinity.cookie is not None:
        pattern = rf"^(.*;\s*)?{affinity.cookie.name}={revision}(\s*;.*)?$"
        return {"type": "RegularExpression", "name": "Cookie", "value": pattern}
    assert affinity.header is not None
    return {"type": "Exact", "name": affinity.header.name, "value": revision}


def stamp(affinity: api.SessionAffinity, revision: str) -> dict[str, Any]:
    """The backendRef filter that marks a backend's answers with its revision. The cookie is added
    (the model server's own Set-Cookie headers stay); the header is set."""
    if affinity.cookie is not None:
        cookie = {"name": "Set-Cookie", "value": f"{affinity.cookie.name}={revision}; Path=/; HttpOnly"}
        return {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [cookie]}}
    assert affinity.header is not None
    header = {"name": affinity.header.name, "value": revision}
    return {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [header]}}


def stamps(affinity: api.SessionAffinity | None, pinned: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Backend -> its stamp filter (none without session affinity)."""
    return {b: stamp(affinity, r) for b, r in pinned.items()} if affinity is not None else {}


def session_rules(
    owner_name: str,
    affinity: api.SessionAffinity | None,
    pinned: Mapping[str, str],
    base: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One rule per pinned backend: the weighted rule's matches (`base`) with the session's header
    added, and that backend alone (stamped too, so the session's answers keep saying where it is)."""
    if affinity is None:
        return []
    rules = []
    for backend, revision in pinned.items():
        header = session_match(affinity, revision)
        matches = [{**m, "headers": [*(m.get("headers") or []), header]} for m in base] or [
            {"headers": [header]}
        ]
        refs = backend_refs({backend: 1}, stamps(affinity, {backend: revision}))
        name = session_rule_name(owner_name, backend)
        rules.append({"name": name, "matches": matches, "backendRefs": refs})
    return rules


def read_sessions(
    obj: dict[str, Any], owner_name: str, affinity: api.SessionAffinity | None
) -> dict[str, str]:
    """The sessions the route keeps, backend -> revision: a session rule that sends the requests
    carrying a revision to one backend, whose answers (there and in the weighted rule) are stamped
    with that same revision."""
    index = managed_rule(obj, owner_name)
    if affinity is None or index is None:
        return {}
    rules = obj["spec"]["rules"]
    stamped = {ref.get("name", ""): ref.get("filters") for ref in rules[index].get("backendRefs") or []}
    found = {}
    for rule in rules:
        refs = rule.get("backendRefs") or []
        if len(refs) != 1 or rule.get("name") != session_rule_name(owner_name, refs[0].get("name", "")):
            continue
        backend = refs[0]["name"]
        revision = next((r for r in _stamped(refs[0].get("filters"), affinity)), None)
        first = (rule.get("matches") or [{}])[0]
        if (
            revision is not None
            and stamped.get(backend) == refs[0].get("filters")
            and session_match(affinity, revision) in _with_type(first.get("headers") or [])
        ):
            found[backend] = revision
    return found


def _stamped(filters: list[dict[str, Any]] | None, affinity: api.SessionAffinity) -> list[str]:
    """The revisions a backendRef's filters stamp its answers with (as `stamp` writes them)."""
    header = affinity.header.name if affinity.header is not None else "Set-Cookie"
    found = []
    for f in filters or []:
        modifier = f.get("responseHeaderModifier") or {}
        for h in [*(modifier.get("add") or []), *(modifier.get("set") or [])]:
            if h.get("name", "").lower() == header.lower():
                value = str(h.get("value", ""))
                if affinity.cookie is not None:
                    value = value.partition(";")[0].removeprefix(f"{affinity.cookie.name}=")
                found.append(value)
    return found


def _with_type(headers: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Header matches as written, with Gateway API's default type filled in."""
    return [{"type": "Exact", **h} for h in headers]


# A header match as read back and compared: (type, header name, value).
HeaderTriple = tuple[str, str, str]


def header_rule_name(owner_name: str, route_name: str) -> str:
    return f"{owner_name}-header-{route_name}"


def header_triples(route: api.HeaderRoute) -> frozenset[HeaderTriple]:
    """The router-neutral form header routes are compared in. Header names are case-insensitive
    (RFC 9110), and Istio stores them lowercased, so the form lowercases them."""
    return frozenset(
        ("Exact", m.header_name.lower(), m.header_value)
        if m.header_value is not None
        else ("RegularExpression", m.header_name.lower(), m.regex or "")
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


def is_ours(rule: dict[str, Any], owner_name: str) -> bool:
    """A header or session rule modelship wrote (by its name)."""
    name = str(rule.get("name", ""))
    return name.startswith((header_rule_name(owner_name, ""), session_rule_name(owner_name, "")))


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
        if str(rule.get("name", "")).startswith(prefix)
        and [r.get("name") for r in rule.get("backendRefs") or []] == canary
    }


def _triples(rule: dict[str, Any]) -> frozenset[HeaderTriple]:
    """The headers of a rule's first match."""
    first = (rule.get("matches") or [{}])[0]
    return frozenset(
        (h.get("type", "Exact"), str(h.get("name", "")).lower(), h.get("value", ""))
        for h in first.get("headers") or []
    )


def with_headers(
    obj: dict[str, Any],
    owner_name: str,
    wanted: dict[str, int],
    routes: Sequence[api.HeaderRoute],
    affinity: api.SessionAffinity | None = None,
    pinned: Mapping[str, str] = {},
) -> list[dict[str, Any]] | None:
    """A user's route's rules with the managed rule's weights (and session stamps) set, and
    modelship's header rules, then its session rules (and only those) just before it; None without
    a managed rule."""
    rules = [r for r in obj.get("spec", {}).get("rules") or [] if not is_ours(r, owner_name)]
    index = managed_rule({"spec": {"rules": rules}}, owner_name)
    if index is None:
        return None
    managed = {**rules[index], "backendRefs": backend_refs(wanted, stamps(affinity, pinned))}
    base = managed.get("matches") or ()
    ours = [*header_rules(owner_name, routes, base), *session_rules(owner_name, affinity, pinned, base)]
    return [*rules[:index], *ours, managed, *rules[index + 1 :]]


def route(
    owner: Owner,
    name: str,
    parent_refs: list[api.ParentRef],
    wanted: dict[str, int],
    headers: Sequence[api.HeaderRoute] = (),
    affinity: api.SessionAffinity | None = None,
    pinned: Mapping[str, str] = {},
) -> Manifest:
    """The HTTPRoute modelship creates when none exists (or owns): the header rules, the session
    rules, then the weighted one."""
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
            "rules": [
                *header_rules(owner.name, headers),
                *session_rules(owner.name, affinity, pinned),
                {"backendRefs": backend_refs(wanted, stamps(affinity, pinned))},
            ],
        },
    }


def managed_rule(obj: dict[str, Any], owner_name: str) -> int | None:
    """Index of the weighted rule modelship manages in a route, or None (never a header rule)."""
    ours = {owner_name, f"{owner_name}-stable", f"{owner_name}-canary"}
    for index, rule in enumerate(obj.get("spec", {}).get("rules") or []):
        if not is_ours(rule, owner_name) and any(
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


def traffic_condition(
    route_name: str, wanted: dict[str, int], read: dict[str, int] | None, kind: str = "HTTPRoute"
) -> ConditionValue:
    """`TrafficRouted` from what the route (an HTTPRoute, or the `kind` of another router's) showed
    when the pass began."""
    if read is None:
        return (
            "False",
            "RuleNotFound",
            f"{kind} {route_name} has no {rule_noun(kind)} to {', '.join(wanted)}",
        )
    if read != wanted:
        message = f"{kind} {route_name} routes {shown(read)}; modelship asked for {shown(wanted)}"
        return ("False", "WeightMismatch", message)
    return ("True", "WeightsSet", f"{kind} {route_name}: {shown(read)}")


# What a route object calls the rule modelship manages, for messages.
_RULE = {"HTTPRoute": "rule with a backendRef", "VirtualService": "managed HTTP route with a destination"}


def rule_noun(kind: str) -> str:
    """The managed rule of a route of this kind, as messages name it."""
    return _RULE.get(kind, "rule")


def shown(weights: Mapping[str, int]) -> str:
    """Weights as a person reads them: `fraud-stable=80, fraud-canary=20`."""
    return ", ".join(f"{k}={v}" for k, v in weights.items())


MISSING: ConditionValue = (
    "False",
    "HTTPRouteMissing",
    "spec.traffic.httpRoute does not exist and spec.traffic.parentRefs is not set, "
    "so modelship cannot create it",
)
