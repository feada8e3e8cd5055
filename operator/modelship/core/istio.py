"""The `istio` router, pure: VirtualService destination weights between `<name>-stable` and
`<name>-canary`, as Argo Rollouts sets them.

The destinations are the two Services themselves (no DestinationRule subsets): each revision
already has a Service selecting its pods. Two cases (the shell, `kube/virtualservices.py`, does
the I/O):
- The VirtualService does not exist and `spec.traffic.virtualService.hosts` is set: modelship
  creates it (owned by the ModelDeployment) with one HTTP route per name in `routes` (default:
  `<name>`), each sending to the two Services.
- It exists and belongs to someone else: modelship touches only the HTTP routes it manages,
  those named in `routes`, or without `routes` the first with a destination `<name>`,
  `<name>-stable` or `<name>-canary`, and replaces their destinations; other routes, matches,
  retries, timeouts, hosts and gateways stay as the user wrote them.

Header routes (`setHeaderRoute` steps) are HTTP routes of their own, named as the Gateway API
router names its rules (`gateway.header_rule_name`) and placed just before the first managed
route: Istio takes the first route that matches, so they must come first. Each repeats that
route's matches with its headers added (`exact` or `regex`; header names lowercased, as Istio
requires), and sends to `<name>-canary` alone.

A `shadow` step (core/shadow.py) marks requests the same way as through an HTTPRoute: the managed
routes set the two `x-modelship-shadow-*` request headers during the shadow (Istio's
`headers.request.set`) and remove them otherwise, so a client cannot ask a pod to copy; the
user's own request header operations stay.

Sticky sessions (`spec.traffic.sessionAffinity`) are the Gateway API router's, in Istio's words:
each weighted destination's answers are stamped with its revision (the destination's
`headers.response`: `set-cookie` added, or the header set), and one HTTP route per weighted
backend, `<name>-session-stable|canary`, placed after the header routes, sends the requests that
carry that revision back to it (a `regex` match on `cookie`, or an `exact` one on the header).

What "verified" means here: Istio has no per-gateway acceptance the way Gateway API's
`status.parents` has. The read-back shows that the API server (and Istio's validating webhook,
where installed) accepted and stored the weights. When istiod distributes status
(`PILOT_ENABLE_STATUS`), a `Reconciled` condition says whether every proxy took the object's
current generation; `reconciled` reads it like `gateway.accepted`, and without it there is
nothing more to wait for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from typing import Any

from modelship import api
from modelship.api import ConditionValue
from modelship.core import gateway, manifests
from modelship.core.gateway import HeaderTriple
from modelship.core.manifests import Manifest, Owner
from modelship.core.shadow import PERCENT_HEADER, REVISION_HEADER, Shadow

_SHADOW_HEADERS = (PERCENT_HEADER, REVISION_HEADER)

GROUP_VERSION = "networking.istio.io/v1"
KIND = "VirtualService"

# Istio's StringMatch kinds as the router-neutral header form names them (`gateway.header_triples`).
_MATCH_KINDS = {"exact": "Exact", "regex": "RegularExpression", "prefix": "Prefix"}


def destinations(
    wanted: Mapping[str, int], stamps: Mapping[str, dict[str, Any]] = {}
) -> list[dict[str, Any]]:
    """The destinations for `wanted` (Service -> weight), each with its session stamp if it has one."""
    return [
        {"destination": {"host": name, "port": {"number": manifests.SERVICE_PORT}}, "weight": weight}
        | ({"headers": stamps[name]} if name in stamps else {})
        for name, weight in wanted.items()
    ]


# ---- sticky sessions ---------------------------------------------------------------------------


def stamp(affinity: api.SessionAffinity, revision: str) -> dict[str, Any]:
    """A destination's `headers` that mark its answers with `revision`: the Gateway API router's
    stamp (`gateway.stamp`), as Istio's header operations (a map of lowercase names)."""
    modifier = gateway.stamp(affinity, revision)["responseHeaderModifier"]
    return {"response": {verb: {h["name"].lower(): h["value"] for h in hs} for verb, hs in modifier.items()}}


def stamps(affinity: api.SessionAffinity | None, pinned: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Backend -> its stamp (none without session affinity)."""
    return {b: stamp(affinity, r) for b, r in pinned.items()} if affinity is not None else {}


def _session_header(affinity: api.SessionAffinity, revision: str) -> dict[str, Any]:
    """The header match of requests that carry `revision` (`gateway.session_match`), as Istio's."""
    match = gateway.session_match(affinity, revision)
    kind = "regex" if match["type"] == "RegularExpression" else "exact"
    return {match["name"].lower(): {kind: match["value"]}}


def session_routes(
    owner_name: str,
    affinity: api.SessionAffinity | None,
    pinned: Mapping[str, str],
    base: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """One HTTP route per pinned backend: the managed route's matches (`base`) with the session's
    header added, and that backend alone, stamped (so the session's answers keep saying where it is)."""
    if affinity is None:
        return []
    out = []
    for backend, revision in pinned.items():
        header = _session_header(affinity, revision)
        matches = [{**m, "headers": {**(m.get("headers") or {}), **header}} for m in base] or [
            {"headers": header}
        ]
        route = destinations({backend: 100}, stamps(affinity, {backend: revision}))
        out.append({"name": gateway.session_rule_name(owner_name, backend), "match": matches, "route": route})
    return out


def _stamped(headers: dict[str, Any] | None, affinity: api.SessionAffinity) -> str | None:
    """The revision a destination's `headers` stamp its answers with (as `stamp` writes them)."""
    response = (headers or {}).get("response") or {}
    if affinity.cookie is not None:
        cookie = str((response.get("add") or {}).get("set-cookie", "")).partition(";")[0]
        prefix = f"{affinity.cookie.name}="
        return cookie.removeprefix(prefix) if cookie.startswith(prefix) else None
    assert affinity.header is not None
    found = (response.get("set") or {}).get(affinity.header.name.lower())
    return str(found) if found else None


def read_sessions(
    obj: dict[str, Any], owner_name: str, names: Sequence[str] | None, affinity: api.SessionAffinity | None
) -> dict[str, str]:
    """The sessions the VirtualService keeps, backend -> revision: a session route that sends the
    requests carrying a revision to one backend, whose answers (there and in the first managed route)
    are stamped with that same revision."""
    indexes = managed_routes(obj, owner_name, names)
    if affinity is None or not indexes:
        return {}
    http = _http(obj)
    stamped = {_service(d): d.get("headers") for d in http[indexes[0]].get("route") or []}
    found = {}
    for route in http:
        dests = route.get("route") or []
        if len(dests) != 1 or route.get("name") != gateway.session_rule_name(owner_name, _service(dests[0])):
            continue
        backend, headers = _service(dests[0]), dests[0].get("headers")
        revision = _stamped(headers, affinity)
        first = (route.get("match") or [{}])[0].get("headers") or {}
        wanted = _session_header(affinity, revision) if revision is not None else {}
        if revision is not None and stamped.get(backend) == headers and wanted.items() <= first.items():
            found[backend] = revision
    return found


def _service(destination: dict[str, Any]) -> str:
    """The Service a destination names: its host's first label (`fraud-canary`,
    `fraud-canary.models.svc.cluster.local`)."""
    return str((destination.get("destination") or {}).get("host", "")).split(".", 1)[0]


def _ours(route: dict[str, Any], owner_name: str) -> bool:
    """A header or session route modelship wrote (by its name)."""
    name = str(route.get("name", ""))
    return name.startswith(
        (gateway.header_rule_name(owner_name, ""), gateway.session_rule_name(owner_name, ""))
    )


def _http(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("spec") or {}).get("http") or [])


def managed_routes(obj: dict[str, Any], owner_name: str, names: Sequence[str] | None) -> list[int] | None:
    """Indexes of the HTTP routes whose destinations modelship sets: those named `names` (None if
    one is missing), else the first with a destination to one of our Services (None without)."""
    http = _http(obj)
    if names:
        by_name = {r.get("name"): i for i, r in enumerate(http) if not _ours(r, owner_name)}
        found = [by_name.get(n) for n in names]
        return [i for i in found if i is not None] if None not in found else None
    ours = {owner_name, f"{owner_name}-stable", f"{owner_name}-canary"}
    for index, route in enumerate(http):
        if not _ours(route, owner_name) and any(_service(d) in ours for d in route.get("route") or []):
            return [index]
    return None


def _route_weights(route: dict[str, Any]) -> dict[str, int]:
    """A route's weights by Service; a lone destination without a weight gets all (Istio's rule)."""
    dests = route.get("route") or []
    default = 100 if len(dests) == 1 else 0
    return {_service(d): int(d.get("weight", default)) for d in dests}


def read_weights(obj: dict[str, Any], owner_name: str, names: Sequence[str] | None) -> dict[str, int] | None:
    """The weights the managed routes give our Services; None without them. Routes that disagree
    (someone edited one) are shown each by name (`primary/fraud-stable=80, ...`), which no step's
    weights ever equal, so a step holds until they agree again."""
    indexes = managed_routes(obj, owner_name, names)
    if indexes is None:
        return None
    http = _http(obj)
    each = [_route_weights(http[i]) for i in indexes]
    if all(w == each[0] for w in each):
        return each[0]
    return {
        f"{http[i].get('name', i)}/{svc}": w
        for i, ws in zip(indexes, each, strict=True)
        for svc, w in ws.items()
    }


def _triples(match: dict[str, Any]) -> frozenset[HeaderTriple]:
    out = set()
    for header, value in (match.get("headers") or {}).items():
        for kind, shown in _MATCH_KINDS.items():
            if kind in (value or {}):
                out.add((shown, str(header).lower(), str(value[kind])))
    return frozenset(out)


def read_headers(
    obj: dict[str, Any], owner_name: str, names: Sequence[str] | None
) -> dict[str, frozenset[HeaderTriple]]:
    """The header routes the VirtualService shows, by route name: the headers each of modelship's
    header routes that sends to `<name>-canary` alone adds to the first managed route's first match
    (one edited to send elsewhere is not ours any more)."""
    prefix = gateway.header_rule_name(owner_name, "")
    http = _http(obj)
    indexes = managed_routes(obj, owner_name, names)
    base = _triples((http[indexes[0]].get("match") or [{}])[0]) if indexes else frozenset()
    canary = [f"{owner_name}-canary"]
    return {
        str(r["name"])[len(prefix) :]: _triples((r.get("match") or [{}])[0]) - base
        for r in http
        if str(r.get("name", "")).startswith(prefix) and [_service(d) for d in r.get("route") or []] == canary
    }


def header_routes(
    owner_name: str, routes: Sequence[api.HeaderRoute], base: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """One HTTP route per header route: the managed route's matches (`base`) with the route's
    headers added, and a single destination, `<name>-canary`."""
    out = []
    for route in routes:
        ours = {
            name: {"exact" if kind == "Exact" else "regex": value}
            for kind, name, value in sorted(gateway.header_triples(route))
        }
        matches = [{**m, "headers": {**(m.get("headers") or {}), **ours}} for m in base] or [
            {"headers": ours}
        ]
        out.append(
            {
                "name": gateway.header_rule_name(owner_name, route.name),
                "match": matches,
                "route": destinations({f"{owner_name}-canary": 100}),
            }
        )
    return out


def marked(route: dict[str, Any], shadow: Shadow | None) -> dict[str, Any]:
    """A managed HTTP route with the shadow's request headers set (or removed without one), the
    user's other request header operations kept."""
    headers = deepcopy(route.get("headers") or {})
    request = headers.get("request") or {}
    kept = {k: v for k, v in (request.get("set") or {}).items() if k.lower() not in _SHADOW_HEADERS}
    removed = [n for n in request.get("remove") or [] if n.lower() not in _SHADOW_HEADERS]
    if shadow is not None:
        kept |= {PERCENT_HEADER: str(shadow.percent), REVISION_HEADER: shadow.revision}
    else:
        removed += list(_SHADOW_HEADERS)
    request = {k: v for k, v in request.items() if k not in ("set", "remove")}
    request |= ({"set": kept} if kept else {}) | ({"remove": removed} if removed else {})
    return {**route, "headers": {**headers, "request": request}}


def read_shadow(obj: dict[str, Any], owner_name: str, names: Sequence[str] | None) -> Shadow | None:
    """The shadow the first managed route marks requests for, or None (none set, or a percent of 0)."""
    indexes = managed_routes(obj, owner_name, names)
    if not indexes:
        return None
    route = _http(obj)[indexes[0]]
    values = {
        str(k).lower(): str(v)
        for k, v in (((route.get("headers") or {}).get("request") or {}).get("set") or {}).items()
    }
    percent, revision = values.get(PERCENT_HEADER, ""), values.get(REVISION_HEADER, "")
    if not percent.isdigit() or int(percent) == 0 or not revision:
        return None
    return Shadow(int(percent), revision)


def with_headers(
    obj: dict[str, Any],
    owner_name: str,
    names: Sequence[str] | None,
    wanted: dict[str, int],
    routes: Sequence[api.HeaderRoute],
    shadow: Shadow | None = None,
    affinity: api.SessionAffinity | None = None,
    pinned: Mapping[str, str] = {},
) -> list[dict[str, Any]] | None:
    """A user's VirtualService's HTTP routes with the managed routes' destinations set (stamped for
    sticky sessions, marked for `shadow`) and modelship's header and session routes (and only those)
    just before the first of them; None without a managed route."""
    http = [r for r in _http(obj) if not _ours(r, owner_name)]
    indexes = managed_routes({"spec": {"http": http}}, owner_name, names)
    if indexes is None:
        return None
    for i in indexes:
        http[i] = marked({**http[i], "route": destinations(wanted, stamps(affinity, pinned))}, shadow)
    first = indexes[0]
    base = http[first].get("match") or ()
    ours = [*header_routes(owner_name, routes, base), *session_routes(owner_name, affinity, pinned, base)]
    return [*http[:first], *(marked(r, shadow) for r in ours), *http[first:]]


def virtual_service(
    owner: Owner,
    ref: api.VirtualServiceRef,
    hosts: Sequence[str],
    gateways: Sequence[str],
    wanted: dict[str, int],
    headers: Sequence[api.HeaderRoute] = (),
    shadow: Shadow | None = None,
    affinity: api.SessionAffinity | None = None,
    pinned: Mapping[str, str] = {},
) -> Manifest:
    """The VirtualService modelship creates when none exists (or owns): the header routes, the
    session routes, then one weighted route per managed name (stamped, marked for `shadow`)."""
    weighted = [
        marked({"name": n, "route": destinations(wanted, stamps(affinity, pinned))}, shadow)
        for n in ref.routes or [owner.name]
    ]
    ours = [*header_routes(owner.name, headers), *session_routes(owner.name, affinity, pinned)]
    spec: dict[str, Any] = {"hosts": list(hosts), "http": [*(marked(r, shadow) for r in ours), *weighted]}
    if gateways:
        spec["gateways"] = list(gateways)
    return {
        "apiVersion": GROUP_VERSION,
        "kind": KIND,
        "metadata": {
            "name": ref.name,
            "namespace": owner.namespace,
            "labels": {**manifests.MANAGED_BY, manifests.MODEL_LABEL: owner.name},
            "ownerReferences": [manifests.owner_reference(owner)],
        },
        "spec": spec,
    }


def reconciled(obj: dict[str, Any]) -> bool | None:
    """Whether istiod reports the VirtualService's current generation pushed to every proxy (its
    `Reconciled` condition, written only with status distribution on); None when it reports nothing."""
    status = obj.get("status") or {}
    condition = next((c for c in status.get("conditions") or [] if c.get("type") == "Reconciled"), None)
    if condition is None:
        return None
    seen = condition.get("observedGeneration", status.get("observedGeneration"))
    generation = obj.get("metadata", {}).get("generation")
    return condition.get("status") == "True" and seen is not None and str(seen) == str(generation)


MISSING: ConditionValue = (
    "False",
    "VirtualServiceMissing",
    "spec.traffic.virtualService.name does not exist and spec.traffic.virtualService.hosts is not set, "
    "so modelship cannot create it",
)
