"""What a web metric's HTTP answer means, pure: the value it holds, no data, or an error.

The shell (`modelship.analysis.web`) makes the call; every rule about the answer lives here, and
the value is then judged like any other (`verdicts.judge`):
- a status other than 2xx, or a body that is not JSON: an error (the endpoint or the metric is
  wrong, and `consecutiveErrorLimit` decides when that aborts);
- nothing at `jsonPath`, or null there: no data (`noData` decides);
- a number, a boolean (true 1, false 0) or a string holding a number: the value;
- anything else there (an object, a list, other text): an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from modelship.core.analysis import jsonpath


@dataclass(frozen=True)
class Reading:
    """One answer, read: a value, or no data (`missing` says where), or an `error`."""

    value: float | None = None
    missing: str | None = None
    error: str | None = None


def read(status: int, body: str, path: str) -> Reading:
    """The reading of an answer with HTTP `status` and `body`, at `path` (`web.jsonPath`)."""
    if not 200 <= status < 300:
        return Reading(error=f"answered HTTP {status}: {' '.join(body.split())[:200]}")
    try:
        document = json.loads(body)
    except ValueError:
        return Reading(error=f"answered HTTP {status} with a body that is not JSON: {body.strip()[:100]!r}")
    try:
        found = jsonpath.find(document, path)
    except ValueError as err:  # admission refuses such a path; an old object may still carry one
        return Reading(error=str(err))
    if isinstance(found, jsonpath.Missing):
        return Reading(missing=f"nothing at {found.where} in the answer (web.jsonPath {path})")
    try:
        value = jsonpath.number(found)
    except ValueError as err:
        return Reading(error=f"answered {err} at web.jsonPath {path}")
    return Reading(value=value, missing=None if value is not None else f"null at web.jsonPath {path}")
