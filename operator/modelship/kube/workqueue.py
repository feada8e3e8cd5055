"""The work queue of reconcile passes: ModelDeployment keys served by a bounded set of worker threads.

Every trigger (a watch event, a due timer, a notification, the resync) adds the object's key with
a priority; `workers` threads take the most urgent key and run its pass. A priority is a head
start, not a wall: keys run by their trigger's time plus their priority's `delay`, earliest first
(first in first out within a priority), so a spec change goes ahead of every event queued less
than `EVENT.delay` seconds before it, and no trigger waits for ever behind a flood of more urgent
ones (thousands of ModelDeployments created at once, each a spec change not acted on yet, hold up
the resync only as long as they took to queue and `RESYNC.delay`). Per key:
- at most one pass at a time;
- a trigger while the key is queued raises its priority if it is more urgent (the key is never
  queued twice, so ten watch events in a burst cost one pass);
- a trigger while its pass runs makes it run once more afterwards, queued again at the trigger's
  priority: the running pass may have read the object before the change the trigger reports.

`kept_for_spec` workers are kept for spec changes: passes of any other priority never hold more
than the rest, so a spec change finds a worker free at once even while every other worker is busy
with a burst of rollouts (passes that mostly wait on a saturated API server: more workers would
not finish them sooner, but a spec change waiting for one of them to end would wait longer).

A resync pass is flagged to the pass (`resync=True`, so the reconciler may leave it out) only when
nothing but the resync queued the key: one an event queued stays an event's pass.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from modelship import metrics

K = TypeVar("K", bound=Hashable)

log = logging.getLogger("modelship")


class Priority(enum.IntEnum):
    """Most urgent first."""

    SPEC = 0  # a spec change not acted on yet: what a user waits for
    TIMER = 1  # a due wake-up: a pause that ended, a route to read back
    EVENT = 2  # other watch events: children, EndpointSlices, the operator's own status writes
    RESYNC = 3  # the periodic safety net

    @property
    def label(self) -> str:
        return self.name.lower()

    @property
    def delay(self) -> float:
        """Seconds added to a trigger's time to order it: how long it may be passed by more urgent
        triggers queued after it."""
        return _DELAYS[self]


_DELAYS = {Priority.SPEC: 0.0, Priority.TIMER: 1.0, Priority.EVENT: 10.0, Priority.RESYNC: 60.0}


def event_priority(body: Mapping[str, Any]) -> Priority:
    """A ModelDeployment's watch event: SPEC when its generation is above the one its status says
    the operator acted on (a spec change no pass has decided on yet), else EVENT."""
    generation = int((body.get("metadata") or {}).get("generation") or 0)
    observed = int((body.get("status") or {}).get("observedGeneration") or 0)
    return Priority.SPEC if generation > observed else Priority.EVENT


class Batch:
    """Passes someone waits for (the resync loop for its own): done once each of them has ended."""

    def __init__(self, count: int) -> None:
        self._left = count
        self._done = threading.Condition()

    def _one_done(self) -> None:
        with self._done:
            self._left -= 1
            if self._left <= 0:
                self._done.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Whether every pass ended (False: `timeout` seconds passed first)."""
        with self._done:
            return self._done.wait_for(lambda: self._left <= 0, timeout)


@dataclass
class _Item:
    priority: Priority
    order: int  # first in first out among equal places
    since: float  # when it got its priority: the wait is measured from then
    resync: bool  # only the resync asked for it
    batches: list[Batch] = field(default_factory=list)
    due: float = field(init=False)  # its trigger's time plus its priority's delay

    def __post_init__(self) -> None:
        self.due = self.since + self.priority.delay

    @property
    def place(self) -> tuple[float, int]:
        """Its place in line: the earliest first."""
        return self.due, self.order

    def merge(self, priority: Priority, now: float, order: Callable[[], int]) -> bool:
        """Another trigger; whether it raised the priority (then the item moved in line, never
        back)."""
        self.resync = self.resync and priority == Priority.RESYNC
        if priority >= self.priority:
            return False
        self.priority, self.order, self.since = priority, order(), now
        self.due = min(self.due, now + priority.delay)
        return True


class WorkQueue(Generic[K]):
    """Runs `run(key, resync)` for the keys added, on at most `workers` threads at a time (started
    with the first key), `kept_for_spec` of them only for spec changes. `run` should not raise;
    what it raises is logged. Safe from any thread."""

    def __init__(
        self,
        run: Callable[[K, bool], None],
        workers: int,
        clock: Callable[[], float] = time.monotonic,
        kept_for_spec: int = 0,
    ) -> None:
        if not 0 <= kept_for_spec < workers:
            raise ValueError(f"kept_for_spec must be from 0 to workers - 1 ({workers - 1}): {kept_for_spec}")
        self._run = run
        self._workers = workers
        self._others_limit = workers - kept_for_spec  # passes not of a spec change, at most at once
        self._clock = clock
        self._changed = threading.Condition()
        self._heap: list[tuple[tuple[float, int], K]] = []  # (place, key)
        # The SPEC items again, so a kept worker finds them: an entry stays when its item is taken
        # from `_heap` (or raised, or discarded) until it is popped or the heap is rebuilt.
        self._spec_heap: list[tuple[tuple[float, int], K]] = []
        self._queued: dict[K, _Item] = {}
        self._running: dict[K, bool] = {}  # key -> whether its pass counts against `_others_limit`
        self._again: dict[K, _Item] = {}  # triggered while running: queued again once it ends
        self._order = itertools.count()
        self._depth = dict.fromkeys(Priority, 0)  # of `_queued`
        self._threads: list[threading.Thread] = []
        self._closed = False
        self.last_ended = clock()  # when a pass last ended (the clock's time): the queue moves

    def add(self, key: K, priority: Priority) -> None:
        """Run a pass of `key` (once more after the running one, if one runs)."""
        with self._changed:
            self._add(key, priority, None)

    def add_all(self, keys: Iterable[K], priority: Priority) -> Batch:
        """`add` each key; the batch is done once the pass each of them was added for has ended."""
        keys = list(dict.fromkeys(keys))
        batch = Batch(len(keys))
        with self._changed:
            for key in keys:
                self._add(key, priority, batch)
        return batch

    def discard(self, key: K) -> None:
        """Forget a queued pass of `key` (the object is gone); a running one still ends."""
        with self._changed:
            queued = self._queued.pop(key, None)
            if queued is not None:
                self._count(queued.priority, -1)
            for item in (queued, self._again.pop(key, None)):
                if item is not None:
                    self._release(item)

    def depth(self) -> dict[Priority, int]:
        """Keys waiting for a worker, by priority (not those waiting for their own pass to end)."""
        with self._changed:
            return dict(self._depth)

    def close(self) -> None:
        """Stop the workers once their passes end (tests)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    def _add(self, key: K, priority: Priority, batch: Batch | None) -> None:
        now = self._clock()
        if key in self._running:
            item = self._again.get(key)
            if item is None:
                self._again[key] = item = _Item(priority, 0, now, priority == Priority.RESYNC)
            else:
                item.merge(priority, now, lambda: 0)
        elif (item := self._queued.get(key)) is not None:
            before = item.priority
            if item.merge(priority, now, lambda: next(self._order)):
                self._push(key, item)
                self._count(before, -1)
                self._count(item.priority, 1)
                if item.priority == Priority.SPEC:
                    self._changed.notify()  # a kept worker may take it
        else:
            item = _Item(priority, next(self._order), now, priority == Priority.RESYNC)
            self._enqueue(key, item)
        if batch is not None:
            item.batches.append(batch)
        while len(self._threads) < self._workers:
            thread = threading.Thread(target=self._work, name=f"pass-{len(self._threads)}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _next(self) -> tuple[K, _Item] | None:
        """The most urgent queued key, taken out of the queue and marked running (None: closed);
        only a spec change's while the other passes hold all the workers they may."""
        with self._changed:
            while True:
                if self._closed:
                    return None
                others = sum(self._running.values())  # at most `workers` entries
                heap = self._heap if others < self._others_limit else self._spec_heap
                while heap:
                    place, key = heapq.heappop(heap)
                    item = self._queued.get(key)
                    if item is None or item.place != place:
                        continue  # taken, raised or discarded since it was pushed
                    del self._queued[key]
                    self._count(item.priority, -1)
                    self._running[key] = item.priority != Priority.SPEC
                    return key, item
                self._changed.wait()

    def _work(self) -> None:
        while (taken := self._next()) is not None:
            key, item = taken
            metrics.QUEUE_WAIT.labels(item.priority.label).observe(max(self._clock() - item.since, 0.0))
            try:
                self._run(key, item.resync)
            except Exception:  # a worker must outlive any pass
                log.exception("the pass of %s failed", key)
            finally:
                self._ended(key, item)

    def _ended(self, key: K, item: _Item) -> None:
        with self._changed:
            self.last_ended = self._clock()
            if self._running.pop(key, False):
                self._changed.notify()  # a worker waiting for that room may take any key now
            self._release(item)
            again = self._again.pop(key, None)
            if again is not None:
                again.order = next(self._order)
                self._enqueue(key, again)

    @staticmethod
    def _release(item: _Item) -> None:
        for batch in item.batches:
            batch._one_done()

    def _enqueue(self, key: K, item: _Item) -> None:
        self._queued[key] = item
        self._push(key, item)
        self._count(item.priority, 1)
        self._changed.notify()

    def _push(self, key: K, item: _Item) -> None:
        heapq.heappush(self._heap, (item.place, key))
        if item.priority != Priority.SPEC or self._others_limit == self._workers:
            return
        heapq.heappush(self._spec_heap, (item.place, key))
        if len(self._spec_heap) > 2 * self._depth[Priority.SPEC] + 64:
            # Mostly entries taken from `_heap` meanwhile: rebuilt from the queued SPEC items (this
            # one among them), so it never grows past a multiple of them.
            self._spec_heap = [(i.place, k) for k, i in self._queued.items() if i.priority == Priority.SPEC]
            heapq.heapify(self._spec_heap)

    def _count(self, priority: Priority, change: int) -> None:
        self._depth[priority] += change
        metrics.QUEUE_DEPTH.labels(priority.label).set(self._depth[priority])
