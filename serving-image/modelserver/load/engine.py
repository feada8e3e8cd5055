"""The load loop: open-loop pacing, bounded in count and time, loopback only (unless told), with feedback.

Request i is due at start + i / rate whatever the answers' latency (open loop: a slow server
does not slow the clients down, it gets a queue), sent by a pool of worker threads. A run is
bounded twice: at most `count` requests (default rate * duration), and it stops sending when
`duration` has passed; each request has a timeout. For a share of the predictions answered 200
the true labels go to `/feedback` (same host) with the answer's `feedback_token` (any replica
takes it), or the request id when the server issues no tokens, so servers can count online
accuracy.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import math
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .summary import Summary, percentile

FEEDBACK_PATH = "/feedback"


@dataclass(frozen=True)
class Sample:
    """One request body, and the true labels of its rows (None: never sent as feedback)."""

    body: bytes
    labels: list[Any] | None = None


def check_loopback(url: str) -> urllib.parse.SplitResult:
    """The parsed URL; ValueError unless it is http:// to a loopback address (127.0.0.0/8, ::1)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url must be http://<loopback address>:<port>/<path>, got {url!r}")
    try:
        loopback = ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        loopback = False  # a name: we do not resolve names, so we cannot promise where it goes
    if not loopback:
        raise ValueError(f"load only against loopback addresses (127.0.0.0/8, ::1), not {parts.hostname!r}")
    return parts


def _check_http(url: str) -> urllib.parse.SplitResult:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"--url must be http://<host>:<port>/<path>, got {url!r}")
    return parts


def total_requests(rate: float, duration: float, count: int | None = None) -> int:
    """How many requests a run sends: rate * duration, capped by count."""
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"rate must be a positive number of requests per second, got {rate}")
    if duration <= 0 or not math.isfinite(duration):
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    if count is not None and count < 0:
        raise ValueError(f"count must be 0 or more, got {count}")
    planned = math.floor(rate * duration + 1e-9)
    return planned if count is None else min(planned, count)


def due(i: int, rate: float) -> float:
    """Seconds after the start at which request i is sent."""
    return i / rate


def feedback_due(i: int, ratio: float) -> bool:
    """Whether request i sends feedback: exactly floor(n * ratio) of the first n do, evenly spread."""
    return math.floor((i + 1) * ratio) > math.floor(i * ratio)


class Load:
    """A run in the background: `start()`, `summary()` (live), `stop()` or `wait()`; or `with`."""

    def __init__(
        self,
        url: str,
        samples: Sequence[Sample],
        rate: float,
        duration: float,
        count: int | None = None,
        feedback_ratio: float = 0.0,
        workers: int = 16,
        timeout: float = 5.0,
        host: str | None = None,
        loopback_only: bool = True,
    ) -> None:
        """`host`: the Host header, for a gateway that routes by hostname (default: the URL's).
        `loopback_only=False` (`modelserver load` in a Job, aimed by the operator at a candidate's
        Service): any http:// address."""
        parts = check_loopback(url) if loopback_only else _check_http(url)
        if not samples:
            raise ValueError("no samples to send")
        if not 0 <= feedback_ratio <= 1:
            raise ValueError(f"feedback ratio must be between 0 and 1, got {feedback_ratio}")
        self.url = url
        self._headers = {"Host": host} if host else {}
        self._host, self._port = parts.hostname or "", parts.port or 80
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.samples = list(samples)
        self.rate, self.duration, self.timeout = rate, duration, timeout
        self.total = total_requests(rate, duration, count)
        self.feedback_ratio = feedback_ratio
        self._workers = [threading.Thread(target=self._work, daemon=True) for _ in range(max(1, workers))]
        self._lock = threading.Lock()
        self._next = 0
        self._stop = threading.Event()
        self._start = 0.0
        self._end: float | None = None
        self._codes: Counter[int] = Counter()
        self._latencies: list[float] = []
        self._feedback_codes: Counter[int] = Counter()
        self._correct = self._incorrect = 0

    # ---- control ---------------------------------------------------------------------------
    def start(self) -> Load:
        self._start = time.monotonic()
        for t in self._workers:
            t.start()
        return self

    def stop(self) -> Summary:
        """Send nothing more; wait for requests in flight (at most `timeout` each)."""
        self._stop.set()
        return self.wait()

    def wait(self) -> Summary:
        """Until every request has been answered (or the run was stopped), then the summary."""
        for t in self._workers:
            t.join(self.duration + 3 * self.timeout)
        with self._lock:
            if self._end is None:
                self._end = time.monotonic()
        return self.summary()

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._workers)

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def summary(self) -> Summary:
        with self._lock:
            end = self._end if self._end is not None else time.monotonic()
            latencies = list(self._latencies)
            return Summary(
                elapsed=max(0.0, end - self._start) if self._start else 0.0,
                codes=Counter(self._codes),
                p50=percentile(latencies, 50),
                p99=percentile(latencies, 99),
                feedback_sent=sum(self._feedback_codes.values()),
                feedback_codes=Counter(self._feedback_codes),
                correct=self._correct,
                incorrect=self._incorrect,
            )

    # ---- the loop ---------------------------------------------------------------------------
    def _claim(self) -> int | None:
        with self._lock:
            i = self._next
            if i >= self.total or self._stop.is_set():
                return None
            self._next += 1
            return i

    def _work(self) -> None:
        conn: http.client.HTTPConnection | None = None
        try:
            while (i := self._claim()) is not None:
                wake = self._start + due(i, self.rate)
                # Stop-aware sleep; when answers are so slow that the workers fall behind by more
                # than a timeout past the duration, the rest is not sent (the time bound holds).
                if self._stop.wait(max(0.0, wake - time.monotonic())):
                    return
                if time.monotonic() > self._start + self.duration + self.timeout:
                    return
                sample = self.samples[i % len(self.samples)]
                rid = uuid.uuid4().hex
                code, seconds, answer, conn = self._send(conn, self._path, sample.body, rid)
                with self._lock:
                    self._codes[code] += 1
                    if code:
                        self._latencies.append(seconds)
                if code == 200 and sample.labels is not None and feedback_due(i, self.feedback_ratio):
                    conn = self._feedback(conn, feedback_key(answer, rid), sample.labels)
        finally:
            if conn is not None:
                conn.close()

    def _send(
        self, conn: http.client.HTTPConnection | None, path: str, body: bytes, rid: str
    ) -> tuple[int, float, bytes, http.client.HTTPConnection | None]:
        """(status or 0 for no answer, seconds, body, the connection to reuse) for one POST."""
        headers = {"Content-Type": "application/json", "X-Request-Id": rid, **self._headers}
        for attempt in range(2):  # a kept-alive connection the server closed is retried once, fresh
            c = conn or http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
            conn = None
            t0 = time.perf_counter()
            try:
                c.request("POST", path, body=body, headers=headers)
                answer = c.getresponse()
                data = answer.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                c.close()
                if attempt == 1:
                    break
                continue
            except (OSError, http.client.HTTPException):
                c.close()
                return 0, time.perf_counter() - t0, b"", None
            seconds = time.perf_counter() - t0
            if answer.will_close:
                c.close()
                return answer.status, seconds, data, None
            return answer.status, seconds, data, c
        return 0, 0.0, b"", None

    def _feedback(
        self, conn: http.client.HTTPConnection | None, key: dict[str, str], labels: list[Any]
    ) -> http.client.HTTPConnection | None:
        body = json.dumps({**key, "labels": labels}).encode()
        code, _, answer, conn = self._send(conn, FEEDBACK_PATH, body, uuid.uuid4().hex)
        correct = incorrect = 0
        if code == 200:
            try:
                scored = json.loads(answer)
                correct, incorrect = int(scored["correct"]), int(scored["incorrect"])
            except (ValueError, KeyError, TypeError):
                pass
        with self._lock:
            self._feedback_codes[code] += 1
            self._correct += correct
            self._incorrect += incorrect
        return conn


def feedback_key(answer: bytes, request_id: str) -> dict[str, str]:
    """What names a prediction in its feedback: the answer's token when it has one."""
    try:
        token = json.loads(answer).get("feedback_token")
    except (ValueError, AttributeError):
        token = None
    return {"token": token} if isinstance(token, str) and token else {"request_id": request_id}


def steady(
    url: str, body: bytes, rate: float, duration: float, workers: int = 4, timeout: float = 5
) -> Counter[int]:
    """Send one body at a steady rate for a duration; the status codes (0 for no answer)."""
    return Load(url, [Sample(body)], rate, duration, workers=workers, timeout=timeout).start().wait().codes
