"""A tiny informer: a live local copy of one kind of object, kept by list + watch.

The router needs to see HTTPRoute and EndpointSlice changes within a second; an
informer lists once, then watches from that list's resourceVersion, and lists again
when the watch ends or fails (a 410 Gone, a dropped connection), like client-go's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch

log = logging.getLogger("localworld.informer")


class Informer:
    def __init__(
        self,
        api: client.ApiClient,
        list_fn: Callable[..., Any],
        on_change: Callable[[], None] = lambda: None,
        **list_kwargs: Any,
    ) -> None:
        self._api, self._list, self._kwargs, self._on_change = api, list_fn, list_kwargs, on_change
        self._items: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"informer-{list_fn.__name__}", daemon=True)

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._items.values())

    def get(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return self._items.get(name)

    def start(self, timeout: float = 30) -> None:
        self._thread.start()
        if not self._synced.wait(timeout):
            raise TimeoutError(f"{self._list.__name__}: no first list within {timeout:.0f}s")

    def stop(self) -> None:
        # The watch thread may sit in a read; it is a daemon and checks _stop before acting.
        self._stop.set()

    def _plain(self, obj: Any) -> dict[str, Any]:
        plain: dict[str, Any] = self._api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
        return plain

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self._plain(self._list(**self._kwargs))
                with self._lock:
                    self._items = {o["metadata"]["name"]: o for o in listed["items"]}
                self._synced.set()
                self._on_change()
                stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                    self._list,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=30,
                    **self._kwargs,
                )
                for event in stream:
                    if self._stop.is_set():
                        return
                    obj = self._plain(event["object"])
                    if event["type"] == "ERROR":
                        break  # e.g. 410 Gone: list again
                    with self._lock:
                        if event["type"] == "DELETED":
                            self._items.pop(obj["metadata"]["name"], None)
                        else:
                            self._items[obj["metadata"]["name"]] = obj
                    self._on_change()
            except Exception:
                if not self._stop.is_set():
                    log.exception("%s: watch failed; listing again", self._list.__name__)
                    time.sleep(1)
