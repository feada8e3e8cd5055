"""Running the built images as containers, with every container removed afterwards."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from devcluster import reap
from imagebuild.podman import podman


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def container(
    image: str, *run_args: str, command: tuple[str, ...] = (), owner: str | None = None
) -> Iterator[str]:
    """A detached container on the host network (traffic stays on loopback); removed at exit.
    `owner`: its owner label (default: this run's, so the reaper removes it if the run is killed
    before `finally`)."""
    name = f"modelship-test-{uuid.uuid4().hex[:10]}"
    owner = owner or reap.owner_label()
    podman(
        "run",
        "-d",
        "--pull=never",
        "--name",
        name,
        "--label",
        owner,
        "--network",
        "host",
        *run_args,
        image,
        *command,
    )
    try:
        yield name
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def running(name: str) -> bool:
    r = podman("inspect", "--format", "{{.State.Running}}", name, check=False)
    return r.stdout.strip() == "true"


def logs(name: str) -> str:
    r = podman("logs", name, check=False)
    return r.stdout + r.stderr


def wait_ready(name: str, port: int, timeout: float = 90.0) -> float:
    """Seconds until /readyz answers 200; fails with the container's log if it exits or times out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return time.monotonic() - start
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        if not running(name):
            raise AssertionError(f"container {name} exited before ready:\n{logs(name)}")
        time.sleep(0.1)
    raise AssertionError(f"container {name} not ready after {timeout}s:\n{logs(name)}")


def http(port: int, path: str, body: Any = None) -> tuple[int, str]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=data, method="POST" if data else "GET"
    )
    if data:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
