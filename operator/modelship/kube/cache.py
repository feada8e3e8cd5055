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

Each object is kept as its compact JSON text and parsed when a pass reads it: a parsed manifest
takes about ten times the memory of its JSON, and the cache holds every watched object while a
pass reads a handful. Parsing also hands every reader its own copy.
"""

from __future__ import annotations

import json
import threading
from typing import Any, NamedTuple

Manifest = dict[str, Any]


def version(obj: Manifest) -> int | None:
    """The object's resourceVersion as a number; None when it has none, or it is not one."""
    text = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    return int(text) if text.isdigit() else None


class _Entry(NamedTuple):
    version: int | None
    group: tuple[str, str]  # (collection, model)
    text: str  # the object's compact JSON

    def object(self) -> Manifest:
        parsed: Manifest = json.loads(self.text)
        return parsed


def newer(old: _Entry | None, new: Manifest) -> bool:
    """Whether `new` may replace `old`: it is not older (unordered versions: the later event wins)."""
    after = version(new)
    return old is None or old.version is None or after is None or after >= old.version


def caught_up(cached: _Entry | None, written: str | None) -> bool:
    """Whether the cached object shows the operator's write (`written`: the version it answered,
    None: the object was deleted)."""
    if written is None:
        return cached is None
    return cached is not None and written.isdigit() and (cached.version or -1) >= int(written)


class Cache:
    """Objects by path (`storage.object_path`), grouped by their collection and the ModelDeployment
    they belong to (its name: its own, or the model label of a child). Safe from several threads."""

    def __init__(self, model_label: str) -> None:
        self._label = model_label
        self._objects: dict[str, _Entry] = {}
        self._groups: dict[tuple[str, str], set[str]] = {}  # (collection, model) -> paths
        # path -> the group it belongs to, and the version our write answered
        self._written: dict[str, tuple[tuple[str, str], str | None]] = {}
        self._ready = False
        self._lock = threading.Lock()

    def ready(self) -> None:
        """Every watched kind's initial listing is in: from now on the cache answers."""
        self._ready = True

    def _group(self, path: str, obj: Manifest) -> tuple[str, str]:
        meta = obj["metadata"]
        collection = path.rsplit("/", 1)[0]
        return collection, str((meta.get("labels") or {}).get(self._label) or meta["name"])

    def saw(self, path: str, obj: Manifest) -> None:
        """A watch event: the object as it is now (an older one than cached is ignored)."""
        # Serialised before the lock: passes on other threads read the cache meanwhile.
        entry = _Entry(version(obj), self._group(path, obj), json.dumps(obj, separators=(",", ":")))
        with self._lock:
            old = self._objects.get(path)
            if not newer(old, obj):
                return
            if old is not None:
                self._groups.get(old.group, set()).discard(path)
            self._objects[path] = entry
            self._groups.setdefault(entry.group, set()).add(path)
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

    def _remove(self, path: str, old: _Entry) -> None:
        del self._objects[path]
        paths = self._groups.get(old.group)
        if paths is not None:
            paths.discard(path)
            if not paths:
                del self._groups[old.group]
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
            entry = self._objects.get(path)
        return True, entry.object() if entry is not None else None

    def _entries(self, collection: str, model: str) -> list[tuple[str, _Entry]] | None:
        with self._lock:
            if not self._ready or any(group == (collection, model) for group, _ in self._written.values()):
                return None
            return [(p, self._objects[p]) for p in sorted(self._groups.get((collection, model), ()))]

    def items(self, collection: str, model: str) -> list[Manifest] | None:
        """The objects in `collection` (a list path, namespaced) that belong to `model`, each the
        caller's own copy; None: ask the API."""
        entries = self._entries(collection, model)
        return None if entries is None else [entry.object() for _, entry in entries]

    def versions(self, collections: tuple[str, ...], model: str) -> tuple[tuple[str, int | None], ...] | None:
        """The resourceVersions of `model`'s objects in `collections`, by path: what a pass reads
        of them; None when the cache cannot answer for one of the collections."""
        found: list[tuple[str, int | None]] = []
        for collection in collections:
            entries = self._entries(collection, model)
            if entries is None:
                return None
            found += [(path, entry.version) for path, entry in entries]
        return tuple(found)
