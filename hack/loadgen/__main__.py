"""`python -m loadgen --url http://127.0.0.1:PORT/predict [--rate 20] [--duration 30] ...`"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from loadgen.engine import Load
from loadgen.mix import MixError, holdout_samples, load_file

EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="loadgen",
        description="A steady open-loop load against a loopback model server, with feedback labels.",
    )
    p.add_argument(
        "--url", required=True, help="predict URL, e.g. http://127.0.0.1:8080/predict (loopback only)"
    )
    p.add_argument("--host", help="Host header, for a gateway routing by hostname (default: the URL's)")
    p.add_argument("--rate", type=float, default=20.0, help="requests per second (default 20)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds to send for, at most (default 30)")
    p.add_argument("--count", type=int, help="requests to send, at most (default rate x duration)")
    p.add_argument(
        "--feedback-ratio",
        type=float,
        default=0.0,
        help="share (0..1) of answered predictions whose true labels go to /feedback (default 0)",
    )
    p.add_argument(
        "--inputs", type=Path, help="JSON file of examples (default: the demo models' holdout rows)"
    )
    p.add_argument("--workers", type=int, default=16, help="concurrent connections (default 16)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        samples = load_file(args.inputs) if args.inputs else holdout_samples()
        load = Load(
            args.url,
            samples,
            rate=args.rate,
            duration=args.duration,
            count=args.count,
            feedback_ratio=args.feedback_ratio,
            workers=args.workers,
            timeout=args.timeout,
            host=args.host,
        )
    except (MixError, ValueError) as err:
        print(f"loadgen: {err}", file=sys.stderr)
        return EXIT_USAGE
    interrupted = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        interrupted.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    load.start()
    while load.running and not interrupted.wait(0.2):
        pass
    summary = load.stop()
    if args.json:
        print(json.dumps(summary.as_json()))
    else:
        print("\n".join(summary.lines()))
    return 130 if interrupted.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
