"""One ModelDeployment as it changes, from the Kubernetes watch API: list (for the object and its
resourceVersion), then watch from that version; list again when the server answers 410 Gone (the
version is older than it keeps). Nothing polls: the next object comes when the server sends it."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from modelship.core import control
from modelship.kube.storage import Gone, Storage, md_path

_MAX_WATCH_SECONDS = 300  # one watch request at most; the next resumes from the last version seen


def follow(
    kube: Storage,
    namespace: str,
    name: str,
    deadline: float | None = None,
    resource_version: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The object now, then each new version of it, until `deadline` (time.monotonic()) if any.
    `resource_version`: watch from there first instead of listing (a caller resuming a watch).
    NotApplicable when the object is not there or is deleted."""
    selector = {"fieldSelector": f"metadata.name={name}"}
    version = resource_version
    while deadline is None or time.monotonic() < deadline:
        if version is None:
            listed = kube.request("GET", md_path(namespace), query=selector)
            items = listed.get("items") or []
            if not items:
                raise control.NotApplicable(f'modeldeployment "{name}" not found in namespace "{namespace}"')
            version = str(listed["metadata"]["resourceVersion"])
            yield items[0]
        left = _MAX_WATCH_SECONDS if deadline is None else deadline - time.monotonic()
        seconds = max(1, min(_MAX_WATCH_SECONDS, math.ceil(left)))
        try:
            for event in kube.watch(md_path(namespace), version, seconds, **selector):
                obj = event["object"]
                version = str(obj["metadata"]["resourceVersion"])
                if event["type"] == "DELETED":
                    raise control.NotApplicable(f'modeldeployment "{name}" was deleted')
                if event["type"] in ("ADDED", "MODIFIED"):
                    yield obj
        except Gone:
            version = None  # too old to watch from: list again


def follow_all(kube: Storage, namespace: str | None) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every ModelDeployment in `namespace` (None: all namespaces), then each change, forever:
    ("ADDED" | "MODIFIED" | "DELETED", object). Each list (the first, and again after 410 Gone)
    begins with ("RESET", {}): a reader forgets what it had, as some objects may be gone."""
    version: str | None = None
    while True:
        if version is None:
            listed = kube.request("GET", md_path(namespace))
            version = str(listed["metadata"]["resourceVersion"])
            yield "RESET", {}
            for item in listed.get("items") or []:
                yield "ADDED", item
        try:
            for event in kube.watch(md_path(namespace), version, _MAX_WATCH_SECONDS):
                obj = event["object"]
                version = str(obj["metadata"]["resourceVersion"])
                if event["type"] in ("ADDED", "MODIFIED", "DELETED"):
                    yield event["type"], obj
        except Gone:
            version = None
