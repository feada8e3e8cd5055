"""What the operator last applied, so a steady object costs no write.

Every pass server-side applies the children the engine wants (a revision Deployment, three
Services). In steady state each apply changes nothing, yet costs a request and the API server's
work. `Applied` remembers, per object, a digest of the manifest last applied and the
resourceVersion that apply answered; the watch (kopf's events of the children, fed in by the
handlers) says which resourceVersion each child is at now. An apply is left out only when both
match: the same manifest as last time, and nobody (a person, a controller, a deletion) has
touched the object since. Anything else applies, as before; a child no watch has reported is
always applied, so without the watch (a Reconciler driven directly) nothing is skipped.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from typing import Any


def digest(manifest: dict[str, Any]) -> str:
    """The manifest's content, key order aside."""
    text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Last:
    digest: str  # of the manifest applied
    version: str  # the resourceVersion that apply answered


def unchanged(last: Last | None, wanted: str, seen: str | None) -> bool:
    """Whether applying the manifest of digest `wanted` again would change nothing: it is the one
    last applied, and the object is still at the version that apply left (`seen`: its
    resourceVersion as the watch last reported it, None when it has not or the object is gone)."""
    return last is not None and seen is not None and last.digest == wanted and last.version == seen


class Applied:
    """The last apply per object path (grouped by owner, forgotten with it) and the watch's
    resourceVersion per path; safe to use from several threads."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], dict[str, Last]] = {}
        self._seen: dict[str, str] = {}
        self._lock = threading.Lock()

    def unchanged(self, owner: tuple[str, str], path: str, wanted: str) -> bool:
        with self._lock:
            return unchanged(self._last.get(owner, {}).get(path), wanted, self._seen.get(path))

    def applied(self, owner: tuple[str, str], path: str, wanted: str, version: str) -> None:
        with self._lock:
            self._last.setdefault(owner, {})[path] = Last(wanted, version)

    def saw(self, path: str, version: str | None) -> None:
        """A watch event: the object at `path` is now at `version` (None: deleted)."""
        with self._lock:
            if version is None:
                self._seen.pop(path, None)
            else:
                self._seen[path] = version

    def forget(self, owner: tuple[str, str]) -> None:
        with self._lock:
            self._last.pop(owner, None)
