"""The objects the operator reads, as the watch delivered them, so a pass costs no read request.

kopf watches the ModelDeployments and the Deployments and Services they own; the handlers feed
each object it delivers into `Cache` (`saw`, `gone`). A pass then takes the ModelDeployment and
its children from here instead of a GET and two LISTs. The cache answers only when it can be
trusted, and says "ask the API" (None) otherwise:
- before `ready`: the handlers call it once kopf has delivered every watched kind's initial
  listing (kopf starts no handler before its indices are filled). A Reconciler driven without
  handlers (tests, tools) is never ready, so it reads the API as before;
- after the operator's own write that the watch has not delivered yet (read-your-writes): each
  write's answered resourceVersion (`wrote`; None for a deletion) is kept until the watch shows
  the object at that version or later (gone, for a deletion). A pass that read the object as it
  was before its write would decide on stale data, and its status patch would be refused.

resourceVersions are compared as numbers, as the API server (etcd) issues them: a watch event
never replaces a newer object with an older one. A version that is not a number cannot be
ordered, so it is never trusted over the API.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

Manifest = dict[str, Any]


def version(obj: Manifest) -> int | None:
    """The object's resourceVersion as a number; None when it has none, or it is not one."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


def newer(old: Manifest | None, new: Manifest) -> bool:
    """Whether `new` may replace `old`: it is not older (unordered versions: the later event wins)."""
    if old is None:
        return True
    before, after = version(old), version(new)
    return before is None or after is None or after >= before


def caught_up(cached: Manifest | None, written: str | None) -> bool:
    """Whether the cached object shows the operator's write (`written`: the version it answered,
    None: the object was deleted)."""
    if written is None:
        return cached is None
    return cached is not None and written.isdigit() and (version(cached) or -1) >= int(written)


class Cache:
    """Objects by path (`storage.object_path`), grouped by their collection and the ModelDeployment
    they belong to (its name: its own, or the model label of a child). Safe from several threads."""

    def __init__(self, model_label: str) -> None:
        self._label = model_label
        self._objects: dict[str, Manifest] = {}
        self._groups: dict[tuple[str, str], set[str]] = {}  # (collection, model) -> paths
        # path -> the group it belongs to, and the version our write answered
        self._written: dict[str, tuple[tuple[str, str], str | None]] = {}
        self._ready = False
        self._lock = threading.Lock()

    def ready(self) -> None:
        """Every watched kind's initial listing is in: from now on the cache answers."""
        self._ready = True

    @property
    def is_ready(self) -> bool:
        return self._ready

    def _group(self, path: str, obj: Manifest) -> tuple[str, str]:
        meta = obj["metadata"]
        collection = path.rsplit("/", 1)[0]
        return collection, str((meta.get("labels") or {}).get(self._label) or meta["name"])

    def saw(self, path: str, obj: Manifest) -> None:
        """A watch event: the object as it is now (an older one than cached is ignored)."""
        with self._lock:
            if not newer(self._objects.get(path), obj):
                return
            old = self._objects.get(path)
            if old is not None:
                self._groups.get(self._group(path, old), set()).discard(path)
            self._objects[path] = obj
            self._groups.setdefault(self._group(path, obj), set()).add(path)
            self._settle(path)

    def gone(self, path: str, obj: Manifest) -> None:
        """A watch event: the object was deleted (`obj`: its last state)."""
        with self._lock:
            old = self._objects.get(path)
            if old is not None and newer(old, obj):
                self._remove(path, old)

    def drop(self, path: str) -> None:
        """The API says the object is gone (a deletion the watch missed)."""
        with self._lock:
            old = self._objects.get(path)
            if old is not None:
                self._remove(path, old)
            self._written.pop(path, None)

    def _remove(self, path: str, old: Manifest) -> None:
        del self._objects[path]
        group = self._group(path, old)
        paths = self._groups.get(group)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self._groups[group]
        self._settle(path)

    def wrote(self, path: str, model: str, written: str | None) -> None:
        """The operator wrote the object of `model` (the ModelDeployment it belongs to): the API
        answered `written` (None: deleted it)."""
        with self._lock:
            self._written[path] = ((path.rsplit("/", 1)[0], model), written)
            self._settle(path)

    def _settle(self, path: str) -> None:
        if path in self._written and caught_up(self._objects.get(path), self._written[path][1]):
            del self._written[path]

    def get(self, path: str) -> tuple[bool, Manifest | None]:
        """(True, the object or None when there is none) when the cache knows; (False, None): ask
        the API. The object is a copy, the caller's to change."""
        with self._lock:
            if not self._ready or path in self._written:
                return False, None
            obj = self._objects.get(path)
            return True, copy.deepcopy(obj) if obj is not None else None

    def items(self, collection: str, model: str) -> list[Manifest] | None:
        """The objects in `collection` (a list path, namespaced) that belong to `model`; None: ask
        the API. Shared, not copies: read them, never change them."""
        with self._lock:
            if not self._ready or any(group == (collection, model) for group, _ in self._written.values()):
                return None
            return [self._objects[p] for p in sorted(self._groups.get((collection, model), ()))]

    def versions(self, collections: tuple[str, ...], model: str) -> tuple[tuple[str, int | None], ...] | None:
        """The resourceVersions of `model`'s objects in `collections`, by path: what a pass reads
        of them; None when the cache cannot answer for one of the collections."""
        found: list[tuple[str, int | None]] = []
        for collection in collections:
            listed = self.items(collection, model)
            if listed is None:
                return None
            found += [(f"{collection}/{o['metadata']['name']}", version(o)) for o in listed]
        return tuple(found)
