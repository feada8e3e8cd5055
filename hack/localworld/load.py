"""A steady, bounded request load against a loopback URL: `loadgen`'s loop (one loop, not two).

`steady(url, body, rate, duration)` sends `rate * duration` requests paced open-loop and
returns the status codes it got; `loadgen.Load` adds sample mixes, feedback and live counters.
"""

from __future__ import annotations

from loadgen.engine import steady

__all__ = ["steady"]
