"""Resync passes left out for objects whose inputs have not changed since their last pass.

The resync is the safety net for what no watch event reports; a steady object's pass there reads
everything, decides the same and writes nothing. A pass records the digest of what it read from
the watch cache (the ModelDeployment's resourceVersion, which moves with its spec and its status,
and its Deployments' and Services' resourceVersions), but only when the pass depended on nothing
else: no timer due (it asked for no wake-up), no route object or node capacity read (router
`service`, no counted accelerator), no Job. A resync pass whose digest matches is skipped, except
every `FULL_EVERY`-th one, so what the watch cannot see (a Secret, a pod) is still looked at.
Each object counts its resyncs from its own `phase`, so the objects' whole passes are spread over
the resyncs (about one in `FULL_EVERY` at each), whenever they were created or last changed.
Watch events, timers and notifications always run the whole pass.
"""

from __future__ import annotations

import hashlib
import threading
import zlib
from collections.abc import Hashable, Sequence

FULL_EVERY = 10  # at the default 30 s resync: a whole pass every 5 minutes per steady object


def digest(versions: Sequence[tuple[str, int | None]]) -> str:
    """Of the objects a pass reads, by path and resourceVersion, in any order."""
    text = "\n".join(f"{path}@{version}" for path, version in sorted(versions, key=lambda v: v[0]))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def phase(key: Hashable, full_every: int = FULL_EVERY) -> int:
    """Which of every `full_every` resyncs runs the object's whole pass: spread by its key (stable
    across restarts), so about one object in `full_every` runs whole at each resync."""
    return zlib.crc32(repr(key).encode()) % full_every


class Skips:
    """Per object, the digest of its last whole pass, and how many resyncs asked about it."""

    def __init__(self, full_every: int = FULL_EVERY) -> None:
        self._full_every = full_every
        self._last: dict[Hashable, str] = {}
        self._resyncs: dict[Hashable, int] = {}
        self._lock = threading.Lock()

    def passed(self, key: Hashable, inputs: str | None) -> None:
        """A whole pass ran on inputs of digest `inputs` (None: it depended on more than the
        watch shows, the next resync must run it)."""
        with self._lock:
            if inputs is None:
                self._last.pop(key, None)
            else:
                self._last[key] = inputs

    def skip(self, key: Hashable, inputs: str) -> bool:
        """Whether a resync pass on inputs of digest `inputs` may be left out. Every
        `full_every`-th resync of the object (counted from its `phase`) runs whole all the same."""
        with self._lock:
            resyncs = self._resyncs[key] = self._resyncs.get(key, phase(key, self._full_every)) + 1
            return self._last.get(key) == inputs and resyncs % self._full_every != 0

    def running(self, key: Hashable) -> None:
        """A whole pass starts: nothing is left out until it has run to its end (`passed`)."""
        with self._lock:
            self._last.pop(key, None)

    def forget(self, key: Hashable) -> None:
        """The object is gone."""
        with self._lock:
            self._last.pop(key, None)
            self._resyncs.pop(key, None)
