"""``modelserver`` / ``python -m modelserver``: verify, load, self-test, then serve until SIGTERM.

Exit codes: 0 clean shutdown (or ``--check`` passed), 2 bad configuration, 3 checksum mismatch,
4 the model cannot be loaded or failed its golden self-test.

``modelserver fetch ...`` downloads and verifies an artifact instead (modelserver.fetch);
``modelserver evaluate ...`` scores a model on a labelled dataset (modelserver.evaluate).
``modelserver load ...`` sends a server a bounded load of a dataset's rows (modelserver.load).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

from . import config
from .errors import ChecksumError, StartupError

if TYPE_CHECKING:
    from .service import Service

EXIT_CONFIG = 2
EXIT_CHECKSUM = 3
EXIT_MODEL = 4

log = logging.getLogger("modelserver")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="modelserver", description=__doc__.split("\n")[0])
    p.add_argument("--host", help="address to bind (default: $HOST or 127.0.0.1)")
    p.add_argument("--port", type=int, help="port to bind (default: $PORT or 8080; 0 picks a free one)")
    p.add_argument(
        "--check",
        action="store_true",
        help="verify the checksum, load the model, run the golden self-test, print the metadata and exit",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["fetch"]:
        from . import fetch

        return fetch.main(argv[1:])
    if argv[:1] == ["evaluate"]:
        from . import evaluate

        return evaluate.main(argv[1:])
    if argv[:1] == ["load"]:
        from .load import command

        return command.main(argv[1:])
    args = _parse(argv)
    env = dict(os.environ)
    if args.host:
        env["HOST"] = args.host
    if args.port is not None:
        env["PORT"] = str(args.port)
    try:
        settings = config.from_env(env)
    except config.ConfigError as e:
        print(f"modelserver: configuration error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from .service import Service  # heavy imports after the cheap checks

    try:
        service = Service.start(settings)
    except ChecksumError as e:
        log.error("refusing to start: %s", e)
        return EXIT_CHECKSUM
    except StartupError as e:
        log.error("refusing to start: %s", e)
        return EXIT_MODEL
    if args.check:
        import orjson

        sys.stdout.write(orjson.dumps(service.metadata(), option=orjson.OPT_INDENT_2).decode() + "\n")
        return 0
    _serve(service)
    return 0


def _serve(service: Service) -> None:
    import uvicorn

    from .app import App

    s = service.settings

    class _Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            # Report not-ready at once; uvicorn then stops accepting and drains in-flight requests.
            service.ready = False
            log.info("signal %d: draining and shutting down", sig)
            super().handle_exit(sig, frame)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            # uvicorn re-raises the signal after a graceful shutdown, so the process dies "killed by
            # SIGTERM"; SIGTERM is how a pod is asked to stop, so a drained shutdown exits 0 instead.
            originals = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in originals.items():
                    signal.signal(sig, handler)

    cfg = uvicorn.Config(
        App(service),
        host=s.host,
        port=s.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        server_header=False,
        log_level=s.log_level,
        timeout_graceful_shutdown=s.graceful_timeout_s,
        timeout_keep_alive=s.keepalive_timeout_s,
    )
    _Server(cfg).run()
