"""Timed passes: one heap and one thread for every ModelDeployment that asked to be decided again
at a moment (a pause that ends, a scale-down delay, a route read back), instead of a thread per
object. A due key is handed to `run`, which only queues its pass (`kube.workqueue`): the passes
run on the work queue's workers, as every other trigger's do.

`Schedule` is the ordering alone (no clock, no threads); `Wakeups` runs it.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Schedule(Generic[K]):
    """One due time per key, the earliest asked for; due keys come out in the order of their
    times (ties: the order they were asked for)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._due: dict[K, float] = {}
        self._order = itertools.count()

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: K, due: float) -> bool:
        """Wake `key` at `due` unless it is already due sooner; whether the schedule changed."""
        current = self._due.get(key)
        if current is not None and current <= due:
            return False
        self._due[key] = due
        heapq.heappush(self._heap, (due, next(self._order), key))
        return True

    def cancel(self, key: K) -> None:
        self._due.pop(key, None)  # its heap entry is skipped when it comes up

    def next_due(self) -> float | None:
        self._drop_stale()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[K]:
        """The keys due at `now`, earliest first, removed from the schedule."""
        out: list[K] = []
        while (due := self.next_due()) is not None and due <= now:
            _, _, key = heapq.heappop(self._heap)
            del self._due[key]
            out.append(key)
        return out

    def _drop_stale(self) -> None:
        # An entry whose key was cancelled or moved sooner since it was pushed.
        while self._heap and self._due.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)


class Wakeups(Generic[K]):
    """Calls `run(key)` once each key's time has come, on its one thread (`run` must be quick)."""

    def __init__(self, run: Callable[[K], None], clock: Callable[[], float] = time.monotonic) -> None:
        self._run = run
        self._clock = clock
        self._schedule: Schedule[K] = Schedule()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def at(self, key: K, due: float) -> None:
        """Run `key` at `due` (the clock's time) unless it is due sooner already."""
        with self._changed:
            if self._thread is None:  # the first timer starts the thread
                self._thread = threading.Thread(target=self._loop, name="wakeups", daemon=True)
                self._thread.start()
            if self._schedule.add(key, due):
                self._changed.notify()

    def cancel(self, key: K) -> None:
        with self._changed:
            self._schedule.cancel(key)

    def pending(self) -> int:
        with self._changed:
            return len(self._schedule)

    def _loop(self) -> None:
        while True:
            with self._changed:
                due = self._schedule.pop_due(self._clock())
                if not due:
                    following = self._schedule.next_due()
                    self._changed.wait(None if following is None else max(following - self._clock(), 0))
                    continue
            for key in due:
                self._run(key)
