"""A killed image-test run leaves its containers running (podman's conmon outlives it); the
reaper removes those whose run is gone, by the owner label, and leaves a live run's alone."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devcluster import procs, reap
from imagebuild.build import Built
from imagebuild.podman import podman

from .helpers import container, running

pytestmark = pytest.mark.images


def test_the_reaper_removes_a_gone_runs_containers_and_keeps_a_live_runs(serving_image: Built) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    start = procs.start_time(gone.pid) or 0
    gone.wait()  # a run that was killed: its pid (with that start time) runs no more
    sleep = ("-c", "import time; time.sleep(120)")
    gone_owner = f"{reap.CONTAINER_OWNER}={gone.pid}.{start}"
    with (
        container(serving_image.ref, "--entrypoint", "python", command=sleep, owner=gone_owner) as dead,
        container(serving_image.ref, "--entrypoint", "python", command=sleep) as live,
    ):
        ids = {n: podman("inspect", "--format", "{{.Id}}", n).stdout.strip() for n in (dead, live)}
        removed = reap.reap_containers()
        assert podman("inspect", dead, check=False).returncode != 0  # gone
        assert running(live)
        assert any(ids[dead].startswith(c) for c in removed)
        assert not any(ids[live].startswith(c) for c in removed)
