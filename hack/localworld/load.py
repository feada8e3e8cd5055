"""A steady, bounded request load against a loopback URL (for tests of the router's split).

Open-loop pacing: request i is due at start + i / rate, whatever the answers' latency,
sent by a few worker threads. Bounded twice: at most `rate * duration` requests and
`duration + timeout` seconds. Only loopback targets (127.0.0.0/8) are accepted.
"""

from __future__ import annotations

import ipaddress
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter


def steady(
    url: str, body: bytes, rate: float, duration: float, workers: int = 4, timeout: float = 5
) -> Counter[int]:
    """Status codes of the answers (0 for a connection error)."""
    host = urllib.parse.urlsplit(url).hostname or ""
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"load only against loopback addresses, not {host!r}")
    total = int(rate * duration)
    start = time.monotonic()
    codes: Counter[int] = Counter()
    lock = threading.Lock()
    next_index = iter(range(total))

    def work() -> None:
        while True:
            with lock:
                i = next(next_index, None)
            if i is None or time.monotonic() > start + duration + timeout:
                return
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=timeout) as r:
                    r.read()
                    code = r.status
            except urllib.error.HTTPError as err:
                code = err.code
            except OSError:
                code = 0
            with lock:
                codes[code] += 1

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(duration + 2 * timeout)
    return codes
