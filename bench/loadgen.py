"""A small closed-loop HTTP/1.1 load generator for loopback benchmarks (stdlib + optional uvloop).

Each of N connections sends one request, waits for the whole response, records the latency and sends
the next; servers that close the connection after each response (HTTP/1.0 style, like Flask's own
server) are reconnected, and that cost counts, as it would for their clients.

    python bench/loadgen.py --port 8080 --path /predict --body '{"instances": [[1,2,3,4]]}' \
        --connections 16 --duration 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    rps: float
    p50_ms: float
    p99_ms: float
    mean_ms: float


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def build_request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: keep-alive\r\n\r\n"
    )
    return head.encode() + body


async def _connection(
    host: str,
    port: int,
    request: bytes,
    stop_at: float,
    record_from: float,
    lat: list[float],
    errs: list[int],
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    while True:
        start = time.perf_counter()
        if start >= stop_at:
            break
        if writer is None:
            reader, writer = await asyncio.open_connection(host, port)
        assert reader is not None
        writer.write(request)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            writer = None
            errs[0] += 1
            continue
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        close = lines[0].startswith(b"HTTP/1.0")
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"connection":
                v = value.strip().lower()
                close = v == b"close" or (close and v != b"keep-alive")
            elif lname == b"transfer-encoding":
                raise RuntimeError("chunked responses are not supported by this load generator")
        if length:
            await reader.readexactly(length)
        end = time.perf_counter()
        if close:
            writer.close()
            writer = None
        if start >= record_from:
            lat.append(end - start)
            if status != 200:
                errs[0] += 1
    if writer is not None:
        writer.close()


async def run(
    host: str, port: int, path: str, body: bytes, connections: int, duration: float, warmup: float
) -> Result:
    request = build_request(host, port, path, body)
    lat: list[float] = []
    errs = [0]
    t0 = time.perf_counter()
    record_from = t0 + warmup
    stop_at = record_from + duration
    await asyncio.gather(
        *(_connection(host, port, request, stop_at, record_from, lat, errs) for _ in range(connections))
    )
    elapsed = max(time.perf_counter() - record_from, 1e-9)
    ms = sorted(x * 1000 for x in lat)
    return Result(
        requests=len(ms),
        errors=errs[0],
        seconds=round(elapsed, 3),
        rps=round(len(ms) / elapsed, 1),
        p50_ms=round(_percentile(ms, 0.50), 3),
        p99_ms=round(_percentile(ms, 0.99), 3),
        mean_ms=round(statistics.fmean(ms), 3) if ms else float("nan"),
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/predict")
    p.add_argument("--body", required=True, help="the JSON body, or @file")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds (bounded)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("this load generator is for loopback only")
    body = Path(args.body[1:]).read_bytes() if args.body.startswith("@") else args.body.encode()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    duration = min(args.duration, 60.0)
    result = asyncio.run(run(args.host, args.port, args.path, body, args.connections, duration, args.warmup))
    json.dump(asdict(result), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
