"""Shadow traffic: a stable pod sends copies of some of its requests to the candidate and compares
the candidate's answers with its own (docs/rollouts.md#shadow-traffic).

The gateway says which requests and for which candidate: during a `shadow` step the operator's
HTTPRoute sets `x-modelship-shadow-percent` and `x-modelship-shadow-revision` on requests to the
stable backend (and removes any copy a client sent). The copy goes to one fixed address,
`SHADOW_TARGET` (the operator sets `<name>-canary`), never one taken from a request.

A shadow never slows or fails a user's request: a copy is taken only after the answer went out,
queued without waiting (a full queue drops it, counted), and sent by a few workers with a timeout
(a slow or absent candidate is counted as failed).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from .feedback import same_label

log = logging.getLogger("modelserver.shadow")

PERCENT_HEADER = b"x-modelship-shadow-percent"
REVISION_HEADER = b"x-modelship-shadow-revision"
# A revision name (a DNS label): it becomes a metric label, so nothing else is accepted.
_REVISION = re.compile(rb"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")

Outcome = str  # "compared" | "failed" | "dropped": modelserver_shadow_requests_total's result


@dataclass(frozen=True)
class Comparison:
    """What comparing two /predict answers row by row found."""

    rows: int = 0
    agreements: int = 0  # rows whose predicted label (or value) is the same
    abs_difference: float = 0.0  # sum over numeric rows of |candidate - stable|
    confidence_rows: int = 0  # rows both answered with a confidence
    stable_confidence: float = 0.0  # sum over those of our confidence
    candidate_confidence: float = 0.0  # ... and of the candidate's


def wanted(percent: bytes | None, revision: bytes | None, draw: float, own: str = "") -> str | None:
    """The candidate revision to send a copy of this request to, or None. `draw` is uniform in
    [0, 1): the request is copied when it falls below the percent the gateway set. A pod of the
    candidate revision (`own`) never copies: `SHADOW_TARGET` is its own Service."""
    if percent is None or revision is None or not _REVISION.fullmatch(revision):
        return None
    if own and revision.decode() == own:
        return None
    try:
        share = int(percent)
    except ValueError:
        return None
    return revision.decode() if draw * 100 < share else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare(ours: dict[str, Any], theirs: Any) -> Comparison | None:
    """Row by row: our answer against the candidate's; None when theirs is not an answer to the
    same rows (a different shape counts as a failed copy, not as disagreement)."""
    mine = ours.get("predictions")
    other = theirs.get("predictions") if isinstance(theirs, dict) else None
    if not isinstance(mine, list) or not isinstance(other, list) or len(mine) != len(other):
        return None
    agreements, difference = 0, 0.0
    for a, b in zip(mine, other, strict=True):
        agreements += same_label(a, b)
        x, y = _number(a), _number(b)
        if x is not None and y is not None:
            difference += abs(y - x)
    confidence_rows, stable, candidate = 0, 0.0, 0.0
    c_mine, c_other = ours.get("confidence"), theirs.get("confidence")
    if isinstance(c_mine, list) and isinstance(c_other, list) and len(c_mine) == len(c_other) == len(mine):
        for a, b in zip(c_mine, c_other, strict=True):
            x, y = _number(a), _number(b)
            if x is not None and y is not None:
                confidence_rows += 1
                stable, candidate = stable + x, candidate + y
    return Comparison(len(mine), agreements, difference, confidence_rows, stable, candidate)


@dataclass(frozen=True)
class _Copy:
    revision: str
    body: bytes  # the user's request
    answer: bytes  # our answer to it


class Client:
    """One keep-alive HTTP/1.1 connection to the target; POST a body, get (status, body)."""

    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {self._host}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        parts = status_line.split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError(f"not an HTTP answer: {status_line[:80]!r}")
        length, close = None, False
        while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value.strip())
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        if length is None:
            raise ConnectionError("the answer has no content-length")
        payload = await reader.readexactly(length)
        if close:
            self.close()
        return int(parts[1]), payload

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


class Mirror:
    """The bounded queue of copies and the workers that send them.

    `record(revision, outcome, comparison)` is called once per copy (the metrics)."""

    def __init__(
        self,
        target: tuple[str, int],
        record: Callable[[str, Outcome, Comparison | None], None],
        *,
        capacity: int,
        workers: int,
        timeout_s: float,
        path: str = "/predict",
    ) -> None:
        self._target, self._record = target, record
        self._capacity, self._workers, self._timeout = capacity, workers, timeout_s
        self._path = path
        self._queue: asyncio.Queue[_Copy] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    def offer(self, revision: str, body: bytes, answer: bytes) -> None:
        """Queue a copy without waiting; a full queue drops it (counted)."""
        if self._queue is None:  # the workers start inside the server's loop, on first use
            self._queue = asyncio.Queue(self._capacity)
            self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]
        try:
            self._queue.put_nowait(_Copy(revision, body, answer))
        except asyncio.QueueFull:
            self._record(revision, "dropped", None)

    async def _work(self) -> None:
        assert self._queue is not None
        client = Client(*self._target)
        while True:
            copy = await self._queue.get()
            try:
                status, payload = await asyncio.wait_for(client.post(self._path, copy.body), self._timeout)
            except (OSError, ConnectionError, ValueError, asyncio.IncompleteReadError, TimeoutError) as err:
                client.close()  # a half-read answer leaves the connection unusable
                log.debug("shadow copy to %s:%d failed: %s", *self._target, err)
                self._record(copy.revision, "failed", None)
                continue
            self._record(copy.revision, *_judge(status, copy.answer, payload))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _judge(status: int, answer: bytes, payload: bytes) -> tuple[Outcome, Comparison | None]:
    if status != 200:
        return "failed", None
    try:
        comparison = compare(orjson.loads(answer), orjson.loads(payload))
    except orjson.JSONDecodeError:
        return "failed", None
    return ("compared", comparison) if comparison is not None else ("failed", None)


def draw() -> float:
    """The sampling draw for `wanted` (not a secret: which requests are copied does not matter)."""
    return random.random()
