"""Which HA replica is active: the highest live priority; ties and stale peers handled as kopf does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from modelship import peering

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def peer(priority: int, seen_ago: float = 1, lifetime: int = 60) -> dict[str, object]:
    return {
        "priority": priority,
        "lastseen": (NOW - timedelta(seconds=seen_ago)).isoformat(),
        "lifetime": lifetime,
    }


def test_the_highest_priority_is_active_and_the_others_stand_by() -> None:
    peers = {"a": peer(10), "b": peer(20)}
    assert peering.is_active(peers, "b", 20, NOW)
    assert not peering.is_active(peers, "a", 10, NOW)


def test_alone_or_before_registering_a_replica_is_active() -> None:
    assert peering.is_active({}, "a", 1, NOW)
    assert peering.is_active({"a": peer(1)}, "a", 1, NOW)


def test_a_peer_whose_lifetime_ran_out_no_longer_counts() -> None:
    peers = {"old": peer(99, seen_ago=61, lifetime=60), "me": peer(5)}
    assert peering.is_active(peers, "me", 5, NOW)
    peers["old"] = peer(99, seen_ago=59, lifetime=60)
    assert not peering.is_active(peers, "me", 5, NOW)


def test_equal_priorities_freeze_both_and_malformed_entries_are_ignored() -> None:
    assert not peering.is_active({"a": peer(7), "b": peer(7)}, "a", 7, NOW)
    assert peering.is_active({"x": "junk", "y": {"priority": 50, "lastseen": "never"}}, "a", 1, NOW)


def test_peering_objects_are_cluster_wide_or_one_per_watched_namespace() -> None:
    assert peering.peering_paths("ms", []) == ["/apis/kopf.dev/v1/clusterkopfpeerings/ms"]
    assert peering.peering_paths("ms", ["a", "b"]) == [
        "/apis/kopf.dev/v1/namespaces/a/kopfpeerings/ms",
        "/apis/kopf.dev/v1/namespaces/b/kopfpeerings/ms",
    ]
