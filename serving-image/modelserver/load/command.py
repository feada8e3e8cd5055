"""``modelserver load``: a bounded load against a running model server, one JSON line of result.

modelship's load-test Job runs it against a candidate's Service (`<name>-canary`, or
`<name>-preview` for blue/green) so the analysis that follows has requests to judge::

    modelserver load --url http://10.96.0.12:8080 --rate 10 --duration 60 --requests 600 \\
        --dataset bundle --feedback-ratio 0.5 --result-file /dev/termination-log

Each request is one row of the dataset (``--dataset`` as ``modelserver evaluate`` reads it:
``bundle``, a file, or a URI with ``--dataset-sha256``), so the bodies are what the model takes;
with ``--feedback-ratio`` that share of the answered rows have their labels sent to
``/feedback`` (online accuracy). The result line (stdout and ``--result-file``)::

    {"requests": 600, "answered": 600, "errors": 0, "codes": {"200": 600}, "p99_seconds": 0.012}

Exit codes: 0 the load was sent and answered (the answers' codes are the analysis's to judge, not
the load's), 2 bad arguments or dataset, 7 no request was answered at all (nothing listens at the
URL): the load test failed, and modelship says so rather than let an analysis judge no traffic.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from ..cli import EXIT_CONFIG
from ..evaluate import ERROR_LIMIT, DatasetError, read_dataset, report
from .engine import Load
from .mix import MixError, row_samples
from .summary import Summary

EXIT_NO_ANSWER = 7
# The bounds the operator also enforces (modelship's api.LoadTest): a Job cannot be told more.
MAX_RATE = 200.0
MAX_DURATION = 3600.0
MAX_REQUESTS = 100_000


def _bounded(kind: type[float] | type[int], low: float, high: float) -> Any:
    def parse(text: str) -> float | int:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be from {low:g} to {high:g}, got {text}")
        return value

    return parse


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="modelserver load", description="A bounded, steady load against a running model server."
    )
    p.add_argument("--url", required=True, help="base URL of the model server (its POST /predict)")
    p.add_argument("--rate", type=_bounded(float, 0.1, MAX_RATE), default=10.0, help="requests/s")
    p.add_argument("--duration", type=_bounded(float, 1, MAX_DURATION), default=60.0, help="seconds, at most")
    p.add_argument(
        "--requests", type=_bounded(int, 1, MAX_REQUESTS), help="requests, at most (default rate x duration)"
    )
    p.add_argument("--dataset", default="bundle", help="bundle (default), a file path, or a URI")
    p.add_argument("--dataset-sha256", help="the dataset's sha256 (required for a URI)")
    p.add_argument("--feedback-ratio", type=_bounded(float, 0, 1), default=0.0, help="0..1 (default 0)")
    p.add_argument("--workers", type=_bounded(int, 1, 64), default=8, help="connections (default 8)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default 5)")
    p.add_argument("--result-file", type=Path, help="also write the result line here (/dev/termination-log)")
    return p.parse_args(argv)


def main(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    args = _parse(argv)
    env = dict(os.environ) if env is None else env
    model_path = Path(env["MODEL_PATH"]) if env.get("MODEL_PATH") else None
    result: dict[str, Any]
    code = 0
    try:
        data = read_dataset(args.dataset, args.dataset_sha256, model_path, env, args.timeout)
        load = Load(
            args.url.rstrip("/") + "/predict",
            row_samples(data.instances, data.labels),
            rate=args.rate,
            duration=args.duration,
            count=args.requests,
            feedback_ratio=args.feedback_ratio,
            workers=args.workers,
            timeout=args.timeout,
            loopback_only=False,
        )
    except (DatasetError, MixError, ValueError) as err:
        result, code = {"error": f"{err}"[:ERROR_LIMIT]}, EXIT_CONFIG
    else:
        summary = _run(load)
        answered = summary.requests - summary.codes.get(0, 0)  # 0: no answer at all
        shown = summary.as_json()
        result = {"requests": summary.requests, "answered": answered, "errors": summary.errors}
        result |= {k: shown[k] for k in ("codes", "p99_seconds", "feedback_sent")}
        if not answered:
            result["error"] = f"none of {summary.requests} requests to {args.url} was answered"
            code = EXIT_NO_ANSWER
    report(result, "load", args.result_file)
    return code


def _run(load: Load) -> Summary:
    """Run the load to its end; SIGTERM (the Job deleted, its deadline) stops it early."""
    stopped = threading.Event()

    def on_signal(sig: int, frame: FrameType | None) -> None:
        stopped.set()

    if threading.current_thread() is threading.main_thread():  # signals reach only the main thread
        signal.signal(signal.SIGTERM, on_signal)
    load.start()
    while load.running and not stopped.wait(0.2):
        pass
    return load.stop()
