"""Helpers for the serving tests: run real modelserver processes and talk HTTP to them."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devcluster import procs

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    """A real ``python -m modelserver`` process on a loopback port."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path, timeout: float = 120.0) -> Server:
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
        env.update({"HOST": "127.0.0.1", "PORT": str(self.port), **self.env})
        with log.open("wb") as out:
            # Dies with the test run, even a SIGKILLed one.
            self.proc = procs.popen(
                [sys.executable, "-m", "modelserver"], env=env, stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"modelserver exited with {self.proc.returncode}:\n{log.read_text()}")
            try:
                if self.request("GET", "/readyz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"modelserver not ready after {timeout}s:\n{log.read_text()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, as Kubernetes does; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return -9
        return int(self.proc.returncode)

    def output(self) -> str:
        return self.log.read_text() if self.log else ""

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        chunks: list[bytes] | None = None,
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            hdrs = {"content-type": "application/json", **(headers or {})}
            if chunks is not None:
                conn.request(method, path, body=iter(chunks), headers=hdrs, encode_chunked=True)
            else:
                conn.request(method, path, body=body, headers=hdrs)
            r = conn.getresponse()
            return Reply(r.status, {k.lower(): v for k, v in r.getheaders()}, r.read())
        finally:
            conn.close()

    def post(self, path: str, obj: Any, headers: dict[str, str] | None = None) -> Reply:
        return self.request("POST", path, json.dumps(obj).encode(), headers)

    def get(self, path: str) -> Reply:
        return self.request("GET", path)


@dataclass
class Exit:
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def run_to_exit(env: dict[str, str], args: list[str] | None = None, timeout: float = 120.0) -> Exit:
    """Run modelserver expecting it to exit by itself (a refused start, or --check)."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    full.update({"HOST": "127.0.0.1", "PORT": str(free_port()), **env})
    p = subprocess.run(
        [sys.executable, "-m", "modelserver", *(args or [])],
        env=full,
        capture_output=True,
        timeout=timeout,
    )
    return Exit(p.returncode, p.stdout.decode(), p.stderr.decode())


def metric_samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """Samples of one metric from Prometheus text exposition, parsed by prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    out = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name:
                out.append((dict(s.labels), float(s.value)))
    return out
