"""The work queue's rules (`kube.workqueue`), with real threads and no cluster: the most urgent
key first and first in first out within a priority, a priority a head start that a long enough
wait overtakes, a key never queued twice, a trigger during
its pass folded into one more pass, never two passes of a key at once, at most `workers` passes,
workers kept for spec changes, and a resync that waits for its own passes."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator

import pytest

from modelship import metrics
from modelship.kube.workqueue import Priority, WorkQueue, event_priority

pytestmark = pytest.mark.unit

WAIT = 5.0


class Passes:
    """A pass function that records its calls; a pass of a key in `held` waits until released."""

    def __init__(self, held: set[str] | None = None, seconds: float = 0.0) -> None:
        self.held = held or set()
        self.seconds = seconds
        self.ran: list[tuple[str, bool]] = []
        self.release = threading.Event()
        self.entered = threading.Event()
        self.running: dict[str, int] = {}
        self.most_per_key = 0
        self.most = 0
        self._lock = threading.Lock()
        self.done = threading.Condition(self._lock)

    def __call__(self, key: str, resync: bool) -> None:
        with self._lock:
            self.running[key] = self.running.get(key, 0) + 1
            self.most_per_key = max(self.most_per_key, self.running[key])
            self.most = max(self.most, sum(self.running.values()))
        if key in self.held:
            self.entered.set()
            assert self.release.wait(WAIT)
        time.sleep(self.seconds)
        with self._lock:
            self.running[key] -= 1
            self.ran.append((key, resync))
            self.done.notify_all()

    def wait_for(self, count: int) -> list[tuple[str, bool]]:
        with self._lock:
            assert self.done.wait_for(lambda: len(self.ran) >= count, WAIT), self.ran
            return list(self.ran)

    def keys(self) -> list[str]:
        with self._lock:
            return [k for k, _ in self.ran]


@pytest.fixture
def held() -> Iterator[tuple[WorkQueue[str], Passes]]:
    """One worker, busy with the pass of "busy" until released."""
    passes = Passes({"busy"})
    queue: WorkQueue[str] = WorkQueue(passes, workers=1)
    queue.add("busy", Priority.EVENT)
    assert passes.entered.wait(WAIT)
    yield queue, passes
    passes.release.set()
    queue.close()


def test_the_most_urgent_priority_runs_first_and_each_priority_in_the_order_queued(
    held: tuple[WorkQueue[str], Passes],
) -> None:
    queue, passes = held
    for key, priority in [
        ("resync-1", Priority.RESYNC),
        ("event-1", Priority.EVENT),
        ("timer-1", Priority.TIMER),
        ("spec-1", Priority.SPEC),
        ("event-2", Priority.EVENT),
        ("spec-2", Priority.SPEC),
        ("resync-2", Priority.RESYNC),
    ]:
        queue.add(key, priority)
    passes.release.set()
    passes.wait_for(8)
    assert passes.keys() == [
        "busy",
        "spec-1",
        "spec-2",
        "timer-1",
        "event-1",
        "event-2",
        "resync-1",
        "resync-2",
    ]


def test_a_priority_is_a_head_start_so_a_long_waiting_trigger_runs_before_newer_urgent_ones() -> None:
    """Thousands created at once are spec changes not acted on yet: the events and the resync
    queued behind them run once they have waited their priority's delay longer."""
    now = [1000.0]
    passes = Passes({"busy"})
    queue: WorkQueue[str] = WorkQueue(passes, workers=1, clock=lambda: now[0])
    queue.add("busy", Priority.EVENT)
    assert passes.entered.wait(WAIT)
    queue.add("resync", Priority.RESYNC)  # due at 1060
    queue.add("event", Priority.EVENT)  # due at 1010
    now[0] += 9.0
    queue.add("spec-9s-later", Priority.SPEC)  # 1009: ahead of the event
    now[0] += 2.0
    queue.add("spec-11s-later", Priority.SPEC)  # 1011: behind it
    queue.add("timer-11s-later", Priority.TIMER)  # 1012
    now[0] += 50.0
    queue.add("spec-61s-later", Priority.SPEC)  # 1061: behind the resync
    queue.add("event", Priority.SPEC)  # raised, never moved back: still due at 1010
    passes.release.set()
    passes.wait_for(7)
    queue.close()
    assert passes.keys() == [
        "busy",
        "spec-9s-later",
        "event",
        "spec-11s-later",
        "timer-11s-later",
        "resync",
        "spec-61s-later",
    ]


def test_a_queued_key_is_never_queued_twice_and_a_more_urgent_trigger_moves_it_up(
    held: tuple[WorkQueue[str], Passes],
) -> None:
    queue, passes = held
    for key in ["a", "b", "a", "c", "a", "a"]:
        queue.add(key, Priority.EVENT)
    assert queue.depth()[Priority.EVENT] == 3
    queue.add("c", Priority.RESYNC)  # less urgent: c keeps its place
    queue.add("c", Priority.SPEC)  # its spec changed: ahead of the events
    assert queue.depth() == {Priority.SPEC: 1, Priority.TIMER: 0, Priority.EVENT: 2, Priority.RESYNC: 0}
    passes.release.set()
    passes.wait_for(4)
    time.sleep(0.1)
    assert passes.keys() == ["busy", "c", "a", "b"], "one pass each"


def test_triggers_during_a_pass_return_at_once_and_cost_one_more_pass_at_their_priority(
    held: tuple[WorkQueue[str], Passes],
) -> None:
    queue, passes = held
    queue.add("other", Priority.EVENT)
    for priority in (Priority.EVENT, Priority.RESYNC, Priority.SPEC, Priority.EVENT):
        started = time.monotonic()
        queue.add("busy", priority)  # its Deployment, Services, a spec change: none waits
        assert time.monotonic() - started < 0.5
    assert queue.depth()[Priority.SPEC] == 0, "not queued while its pass runs"
    passes.release.set()
    passes.wait_for(3)
    time.sleep(0.1)
    # once more for all four, as a spec change's pass: ahead of the event queued before
    assert passes.ran == [("busy", False), ("busy", False), ("other", False)]


def test_a_key_never_runs_twice_at_once_and_at_most_workers_passes_run() -> None:
    passes = Passes(seconds=0.005)
    queue: WorkQueue[str] = WorkQueue(passes, workers=3)
    rng = random.Random(1)
    keys = [f"k{i}" for i in range(6)]

    def trigger() -> None:
        for _ in range(100):
            queue.add(rng.choice(keys), rng.choice(list(Priority)))
            time.sleep(0.001)

    threads = [threading.Thread(target=trigger) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    batch = queue.add_all(keys, Priority.RESYNC)  # the last triggers' passes end before it is done
    assert batch.wait(WAIT)
    queue.close()
    assert passes.most_per_key == 1
    assert passes.most <= 3
    assert len(passes.ran) < 400, "triggers while queued or running were folded"


def test_at_most_workers_passes_run_at_once_and_every_key_runs() -> None:
    passes = Passes(seconds=0.05)
    queue: WorkQueue[str] = WorkQueue(passes, workers=3)
    for i in range(12):
        queue.add(f"k{i}", Priority.EVENT)
    passes.wait_for(12)
    queue.close()
    assert passes.most == 3
    assert sorted(passes.keys()) == sorted(f"k{i}" for i in range(12))


def test_a_kept_worker_runs_a_spec_change_while_the_other_passes_hold_the_rest() -> None:
    passes = Passes({"busy", "spec"})
    queue: WorkQueue[str] = WorkQueue(passes, workers=2, kept_for_spec=1)
    queue.add("busy", Priority.EVENT)
    assert passes.entered.wait(WAIT)
    passes.entered.clear()
    queue.add("event", Priority.EVENT)
    queue.add("timer", Priority.TIMER)
    time.sleep(0.2)
    assert passes.running == {"busy": 1}, "the other worker is kept for spec changes"
    assert queue.depth()[Priority.EVENT] == 1
    queue.add("spec", Priority.SPEC)
    assert passes.entered.wait(WAIT), "the kept worker runs the spec change"
    assert passes.running == {"busy": 1, "spec": 1}
    passes.release.set()
    passes.wait_for(4)
    queue.close()
    assert passes.keys()[2:] == ["timer", "event"]


def test_a_queued_key_raised_to_a_spec_change_is_taken_by_the_kept_worker() -> None:
    passes = Passes({"busy"})
    queue: WorkQueue[str] = WorkQueue(passes, workers=2, kept_for_spec=1)
    queue.add("busy", Priority.EVENT)
    assert passes.entered.wait(WAIT)
    queue.add("later", Priority.EVENT)
    queue.add("raised", Priority.RESYNC)
    queue.add("raised", Priority.SPEC)
    assert passes.wait_for(1) == [("raised", False)]
    assert queue.depth()[Priority.EVENT] == 1, "the event still waits for a worker of its own"
    passes.release.set()
    passes.wait_for(3)
    queue.close()
    assert passes.keys() == ["raised", "busy", "later"]


def test_other_passes_never_take_the_kept_workers_and_spec_changes_may_use_all() -> None:
    lock = threading.Lock()
    running: dict[str, int] = {"spec": 0, "other": 0}
    most: dict[str, int] = {"spec": 0, "other": 0, "all": 0}

    def run(key: str, resync: bool) -> None:
        kind = "spec" if key.startswith("s") else "other"
        with lock:
            running[kind] += 1
            most[kind] = max(most[kind], running[kind])
            most["all"] = max(most["all"], running["spec"] + running["other"])
        time.sleep(0.02)
        with lock:
            running[kind] -= 1

    queue: WorkQueue[str] = WorkQueue(run, workers=4, kept_for_spec=2)
    batch = queue.add_all([f"o{i}" for i in range(40)], Priority.EVENT)
    time.sleep(0.05)
    specs = queue.add_all([f"s{i}" for i in range(40)], Priority.SPEC)
    assert specs.wait(WAIT) and batch.wait(WAIT)
    queue.close()
    assert most["other"] == 2, "two workers are kept for spec changes"
    assert most["spec"] == 4, "spec changes may use every worker"
    assert most["all"] == 4


def test_the_spec_changes_kept_list_does_not_grow_with_passes_taken_elsewhere() -> None:
    """Spec changes one after another on an idle queue are taken from the main line, each leaving
    its entry in the kept workers' own; a long-running operator must not keep them all."""
    passes = Passes()
    queue: WorkQueue[str] = WorkQueue(passes, workers=3, kept_for_spec=1)
    for i in range(300):
        queue.add(f"s{i}", Priority.SPEC)
        passes.wait_for(i + 1)
    queue.close()
    assert len(queue._spec_heap) <= 64 + 1


@pytest.mark.parametrize("kept", [-1, 3])
def test_kept_workers_are_fewer_than_all(kept: int) -> None:
    with pytest.raises(ValueError, match="kept_for_spec"):
        WorkQueue(Passes(), workers=3, kept_for_spec=kept)


def test_the_resync_waits_for_its_own_passes_and_only_a_pass_no_event_asked_for_is_a_resync(
    held: tuple[WorkQueue[str], Passes],
) -> None:
    queue, passes = held
    queue.add("evented", Priority.EVENT)
    batch = queue.add_all(["quiet", "evented", "busy", "quiet"], Priority.RESYNC)
    assert not batch.wait(0.2), "the passes have not run"
    passes.release.set()
    assert batch.wait(WAIT)
    ran = passes.wait_for(4)
    assert ran[0] == ("busy", False)
    # busy ran once more after its running pass (the resync's, flagged so), evented as an event's
    assert sorted(ran[1:]) == [("busy", True), ("evented", False), ("quiet", True)]


def test_the_resync_batch_is_not_done_by_the_pass_running_when_it_was_queued(
    held: tuple[WorkQueue[str], Passes],
) -> None:
    queue, passes = held
    batch = queue.add_all(["busy"], Priority.RESYNC)
    passes.held.clear()  # the next pass of busy does not wait
    passes.release.set()
    assert batch.wait(WAIT)
    assert passes.wait_for(2) == [("busy", False), ("busy", True)]


def test_a_discarded_key_does_not_run_and_releases_its_waiters(
    held: tuple[WorkQueue[str], Passes],
) -> None:
    queue, passes = held
    batch = queue.add_all(["gone", "kept"], Priority.RESYNC)
    queue.discard("gone")
    assert queue.depth()[Priority.RESYNC] == 1
    passes.release.set()
    assert batch.wait(WAIT)
    time.sleep(0.1)
    assert passes.keys() == ["busy", "kept"]


def test_depth_and_wait_are_published_by_priority(held: tuple[WorkQueue[str], Passes]) -> None:
    queue, passes = held

    def waits(priority: str) -> float:
        value = metrics.REGISTRY.get_sample_value(
            "modelship_queue_wait_seconds_count", {"priority": priority}
        )
        return value or 0.0

    before = waits("spec")
    queue.add("a", Priority.SPEC)
    queue.add("b", Priority.RESYNC)
    queue.add("c", Priority.RESYNC)
    assert metrics.REGISTRY.get_sample_value("modelship_queue_depth", {"priority": "spec"}) == 1
    assert metrics.REGISTRY.get_sample_value("modelship_queue_depth", {"priority": "resync"}) == 2
    passes.release.set()
    passes.wait_for(4)
    time.sleep(0.1)
    assert metrics.REGISTRY.get_sample_value("modelship_queue_depth", {"priority": "resync"}) == 0
    assert waits("spec") == before + 1


@pytest.mark.parametrize(
    ("body", "priority"),
    [
        ({"metadata": {"generation": 3}, "status": {"observedGeneration": 2}}, Priority.SPEC),
        ({"metadata": {"generation": 1}}, Priority.SPEC),  # created, no pass yet
        ({"metadata": {"generation": 3}, "status": {"observedGeneration": 3}}, Priority.EVENT),
        ({"metadata": {"generation": 3}, "status": {"observedGeneration": 4}}, Priority.EVENT),
    ],
)
def test_a_spec_change_not_acted_on_yet_is_the_most_urgent_event(
    body: dict[str, dict[str, int]], priority: Priority
) -> None:
    assert event_priority(body) == priority
