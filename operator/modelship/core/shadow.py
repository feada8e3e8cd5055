"""Shadow traffic, pure: the request headers that tell the stable
pods to copy a share of their requests to the candidate (docs/rollouts.md#shadow-traffic).

A gateway's RequestMirror filter would discard the candidate's answer, and Traefik does not
implement it; so the stable serving pods copy requests themselves (modelserver.shadow) and compare
the answers. The gateway only marks the requests: the HTTPRoute's weighted rule, and each header
or session rule modelship writes (any of them may reach a stable pod), carries one
RequestHeaderModifier filter that, during a `shadow` step, sets

    x-modelship-shadow-percent: <percent>
    x-modelship-shadow-revision: <the candidate's revision>

and otherwise removes both, so a client can never ask a pod to copy its request. The pods copy to
`SHADOW_TARGET` (`<name>-canary`, set by the operator), never to an address from a request; a pod
of the candidate revision ignores the mark (`MODELSHIP_REVISION`), so it does not copy to itself.
"""

from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from modelship.core import gateway

PERCENT_HEADER = "x-modelship-shadow-percent"
REVISION_HEADER = "x-modelship-shadow-revision"
FILTER = "RequestHeaderModifier"


@dataclass(frozen=True)
class Shadow:
    """The shadow in effect: this share of the stable pods' requests is copied to `revision`."""

    percent: int
    revision: str


def modifier(shadow: Shadow | None) -> dict[str, Any]:
    """The `requestHeaderModifier` of the weighted rule: set both headers, or remove them."""
    if shadow is None:
        return {"remove": [PERCENT_HEADER, REVISION_HEADER]}
    return {
        "set": [
            {"name": PERCENT_HEADER, "value": str(shadow.percent)},
            {"name": REVISION_HEADER, "value": shadow.revision},
        ]
    }


def _ours(name: str) -> bool:
    return name.lower() in (PERCENT_HEADER, REVISION_HEADER)


def _merged(existing: dict[str, Any] | None, shadow: Shadow | None) -> dict[str, Any]:
    """A rule's RequestHeaderModifier with our headers as `shadow` wants them, the user's own kept
    (Gateway API allows one filter of each type per rule, so ours joins theirs)."""
    theirs = existing or {}
    mine = modifier(shadow)
    merged: dict[str, Any] = {}
    for verb in ("set", "add"):
        kept = [h for h in theirs.get(verb) or [] if not _ours(h.get("name", ""))]
        entries = kept + (mine.get(verb) or [])
        if entries:
            merged[verb] = entries
    removed = [n for n in theirs.get("remove") or [] if not _ours(n)] + (mine.get("remove") or [])
    if removed:
        merged["remove"] = removed
    return merged


def mark(rules: list[dict[str, Any]], owner_name: str, shadow: Shadow | None) -> list[dict[str, Any]]:
    """`rules` (a route's, as about to be written) with the filter for `shadow` on the weighted rule
    and on modelship's header and session rules: any of them can reach a stable pod or carry a
    client's own copy of the headers, so each sets or strips them."""
    index = gateway.managed_rule({"spec": {"rules": rules}}, owner_name)
    if index is None:
        return rules
    out = deepcopy(rules)
    for i, rule in enumerate(out):
        if i == index or gateway.is_ours(rule, owner_name):
            _mark_rule(rule, shadow)
    return out


def _mark_rule(rule: dict[str, Any], shadow: Shadow | None) -> None:
    filters = rule.get("filters") or []
    existing = next((f for f in filters if f.get("type") == FILTER), None)
    wanted = {
        "type": FILTER,
        "requestHeaderModifier": _merged((existing or {}).get("requestHeaderModifier"), shadow),
    }
    rule["filters"] = [wanted if f is existing else f for f in filters] if existing else [*filters, wanted]


def read(obj: dict[str, Any], owner_name: str) -> Shadow | None:
    """The shadow the route's weighted rule asks for, or None (none set, or a percent of 0)."""
    index = gateway.managed_rule(obj, owner_name)
    if index is None:
        return None
    filters = obj["spec"]["rules"][index].get("filters") or []
    found = next((f.get("requestHeaderModifier") or {} for f in filters if f.get("type") == FILTER), {})
    values = {h.get("name", "").lower(): h.get("value", "") for h in found.get("set") or []}
    percent, revision = values.get(PERCENT_HEADER, ""), values.get(REVISION_HEADER, "")
    if not percent.isdigit() or int(percent) == 0 or not revision:
        return None
    return Shadow(int(percent), revision)


def marked(manifest: dict[str, Any], owner_name: str, shadow: Shadow | None) -> dict[str, Any]:
    """An HTTPRoute manifest with its weighted rule marked for `shadow` (`mark`)."""
    spec = manifest["spec"]
    return {**manifest, "spec": {**spec, "rules": mark(spec["rules"], owner_name, shadow)}}
