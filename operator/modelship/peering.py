"""HA: is this replica the active one? The same rule kopf's peering applies.

kopf pauses its own watch handlers on a standby replica, but our resync loop is our
own task and kopf does not pause it; it asks `is_active` before every pass. Replicas
record themselves in the peering object's `status` as
`{identity: {priority, lastseen, lifetime}}`; a peer counts while `lastseen + lifetime`
is in the future. The active replica is the one with the highest priority; equal
priorities freeze everyone (kopf's rule), which random priorities make vanishingly rare.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any


def _alive(peer: Mapping[str, Any], now: datetime) -> bool:
    try:
        seen = datetime.fromisoformat(str(peer["lastseen"]))
        return seen + timedelta(seconds=float(peer.get("lifetime", 60))) > now
    except (KeyError, TypeError, ValueError):
        return False


def is_active(peers: Mapping[str, Any], identity: str, priority: int, now: datetime) -> bool:
    """True unless another live peer has a priority at least as high as ours."""
    for other, peer in peers.items():
        if other == identity or not isinstance(peer, Mapping) or not _alive(peer, now):
            continue
        if int(peer.get("priority", 0)) >= priority:
            return False
    return True


def peering_paths(name: str, namespaces: list[str]) -> list[str]:
    """Where kopf keeps the peers: one cluster object, or one per watched namespace."""
    if not namespaces:
        return [f"/apis/kopf.dev/v1/clusterkopfpeerings/{name}"]
    return [f"/apis/kopf.dev/v1/namespaces/{ns}/kopfpeerings/{name}" for ns in namespaces]
