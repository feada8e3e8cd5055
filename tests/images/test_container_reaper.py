"""A killed image-test run leaves its containers running (podman's conmon outlives it); the
reaper removes those whose run is gone, by the owner label, and leaves a live run's alone."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from devcluster import procs, reap
from imagebuild.build import Built
from imagebuild.podman import podman

from .helpers import running

pytestmark = pytest.mark.images


def test_the_reaper_removes_a_gone_runs_containers_and_keeps_a_live_runs(serving_image: Built) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    start = procs.start_time(gone.pid) or 0
    gone.wait()  # a run that was killed: its pid (with that start time) runs no more
    names = {label: f"modelship-reaptest-{uuid.uuid4().hex[:8]}" for label in ("gone", "live")}
    owners = {"gone": f"{reap.CONTAINER_OWNER}={gone.pid}.{start}", "live": reap.owner_label()}
    sleep = ("-c", "import time; time.sleep(120)")
    try:
        ids = {}
        for label, name in names.items():
            ids[label] = podman(
                "run",
                "-d",
                "--pull=never",
                "--name",
                name,
                "--label",
                owners[label],
                "--entrypoint",
                "python",
                serving_image.ref,
                *sleep,
            ).stdout.strip()
        removed = reap.reap_containers()
        assert not running(names["gone"]) and podman("inspect", names["gone"], check=False).returncode != 0
        assert running(names["live"])
        assert any(ids["gone"].startswith(c) for c in removed) and not any(
            ids["live"].startswith(c) for c in removed
        )
    finally:
        podman("rm", "-f", "-t", "0", *names.values(), check=False)
