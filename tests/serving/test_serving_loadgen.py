"""The benchmark's load generator counts what it should, against keep-alive and closing servers."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .serving_helpers import REPO, Server

pytestmark = pytest.mark.unit


def _loadgen(port: int, path: str, body: str) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "loadgen.py"),
            "--port",
            str(port),
            "--path",
            path,
            "--body",
            body,
            "--connections",
            "4",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


class _Closing(BaseHTTPRequestHandler):
    """HTTP/1.0, one request per connection, like Flask's development server by default."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        status = 200 if self.path == "/ok" else 500
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def closing_server() -> Iterator[int]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Closing)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


def test_against_modelserver(sk_server: Server) -> None:
    r = _loadgen(sk_server.port, "/predict", '{"instances": [[1, 2, 3, 4]]}')
    assert r["requests"] > 10 and r["errors"] == 0
    assert 0 < r["p50_ms"] <= r["p99_ms"]


def test_reconnects_to_servers_that_close_and_counts_errors(closing_server: int) -> None:
    ok = _loadgen(closing_server, "/ok", "{}")
    assert ok["requests"] > 10 and ok["errors"] == 0
    bad = _loadgen(closing_server, "/fail", "{}")
    assert bad["requests"] > 10 and bad["errors"] == bad["requests"]
