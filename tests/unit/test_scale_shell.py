"""The shell's parts for many ModelDeployments: leaving out an apply that would change nothing
(`kube.applied`) and one schedule for every object's timed pass (`kube.wakeups`). Triggers that
arrive during a pass are folded into one more pass by the work queue (test_workqueue.py)."""

from __future__ import annotations

import threading
import time

import pytest

from modelship.kube import applied, wakeups
from modelship.logs import object_logger

pytestmark = pytest.mark.unit

OWNER = ("ns", "fraud")
LOG = object_logger("ns", "fraud")
PATH = "/api/v1/namespaces/ns/services/fraud"
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fraud", "namespace": "ns"}}


def test_a_digest_ignores_key_order_and_sees_any_change() -> None:
    reordered = {"metadata": SERVICE["metadata"], "kind": "Service", "apiVersion": "v1"}
    assert applied.digest(SERVICE) == applied.digest(reordered)
    changed = {**SERVICE, "metadata": {"name": "fraud", "namespace": "other"}}
    assert applied.digest(SERVICE) != applied.digest(changed)


def test_only_the_same_manifest_on_an_object_nobody_touched_since_is_unchanged() -> None:
    last = applied.Last("d1", "10")
    assert applied.unchanged(last, "d1", "10")
    assert not applied.unchanged(last, "d2", "10")  # the engine wants something else now
    assert not applied.unchanged(last, "d1", "11")  # someone (or a controller) changed it since
    assert not applied.unchanged(last, "d1", None)  # deleted, or no watch reported it
    assert not applied.unchanged(None, "d1", "10")  # never applied by this process


def test_the_cache_skips_after_the_watch_confirms_and_applies_again_after_an_edit_or_deletion() -> None:
    cache = applied.Applied()
    wanted = applied.digest(SERVICE)
    assert not cache.unchanged(OWNER, PATH, wanted)
    cache.applied(OWNER, PATH, wanted, "10")
    assert not cache.unchanged(OWNER, PATH, wanted), "no watch event yet: applied again"
    cache.saw(PATH, "10")
    assert cache.unchanged(OWNER, PATH, wanted)
    cache.saw(PATH, "12")  # kubectl edit
    assert not cache.unchanged(OWNER, PATH, wanted)
    cache.applied(OWNER, PATH, wanted, "13")
    cache.saw(PATH, "13")
    assert cache.unchanged(OWNER, PATH, wanted)
    cache.saw(PATH, None)  # deleted
    assert not cache.unchanged(OWNER, PATH, wanted)


def test_a_forgotten_owner_applies_again() -> None:
    cache = applied.Applied()
    cache.applied(OWNER, PATH, "d", "1")
    cache.saw(PATH, "1")
    cache.forget(OWNER)
    assert not cache.unchanged(OWNER, PATH, "d")


def test_due_keys_come_out_earliest_first_and_ties_in_the_order_asked() -> None:
    schedule: wakeups.Schedule[str] = wakeups.Schedule()
    for key, due in [("c", 3.0), ("a", 1.0), ("b", 2.0), ("a2", 1.0)]:
        schedule.add(key, due)
    assert schedule.next_due() == 1.0
    assert schedule.pop_due(0.5) == []
    assert schedule.pop_due(2.0) == ["a", "a2", "b"]
    assert (len(schedule), schedule.next_due()) == (1, 3.0)


def test_the_earliest_time_asked_for_a_key_wins() -> None:
    schedule: wakeups.Schedule[str] = wakeups.Schedule()
    assert schedule.add("a", 5.0)
    assert not schedule.add("a", 7.0)  # later: the sooner one stays
    assert schedule.add("a", 2.0)  # sooner: moved
    assert schedule.pop_due(3.0) == ["a"]
    assert schedule.pop_due(10.0) == [], "the key comes out once, not again at its older time"


def test_a_cancelled_key_never_comes_out_and_can_be_added_again() -> None:
    schedule: wakeups.Schedule[str] = wakeups.Schedule()
    schedule.add("a", 1.0)
    schedule.add("b", 2.0)
    schedule.cancel("a")
    assert schedule.next_due() == 2.0
    schedule.add("a", 3.0)
    assert schedule.pop_due(10.0) == ["b", "a"]


def test_wakeups_hand_each_key_over_once_at_its_time() -> None:
    ran: list[tuple[str, float]] = []
    done = threading.Event()

    def run(key: str) -> None:
        ran.append((key, time.monotonic()))
        if len(ran) == 10:
            done.set()

    timers: wakeups.Wakeups[str] = wakeups.Wakeups(run)
    start = time.monotonic()
    for i in range(10):
        timers.at(f"k{i}", start + 0.2)
    timers.at("k0", start + 0.3)  # later than asked: k0 keeps 0.2
    timers.at("gone", start + 0.1)
    timers.cancel("gone")
    assert done.wait(5)
    time.sleep(0.2)
    assert sorted(k for k, _ in ran) == sorted(f"k{i}" for i in range(10))
    assert min(t for _, t in ran) >= start + 0.2
    assert timers.pending() == 0
