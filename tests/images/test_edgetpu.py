"""Dockerfile.edgetpu: what can be built here, and a loud record of what cannot.

Its runtime stage adds libedgetpu from Coral's apt repository (packages.cloud.google.com), which
this machine cannot reach: only the package registries are. So `make images` builds its builder
stage (tests below check it), and this test builds the whole file and asserts that it fails at
exactly the Coral step, for exactly that reason. If it ever succeeds, the machine can reach Coral's
repository and this test fails, asking for the edgetpu image to be built and tested for real.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess

import pytest

from imagebuild.base import ensure_base
from imagebuild.build import (
    EDGETPU_BUILDER,
    REPO,
    SERVING,
    build,
    build_args,
    git_revision,
    layers,
    podman_build,
)
from imagebuild.podman import environ, podman

pytestmark = pytest.mark.images


def test_edgetpu_builder_stage_is_built_and_shares_the_serving_dependency_layer() -> None:
    edgetpu = build(EDGETPU_BUILDER, log=False)
    serving_builder = f"localhost/{SERVING.name}-builder-stage"
    spec = dataclasses.replace(SERVING, target="builder")
    args = {**build_args(spec, ensure_base(log=False), git_revision()), "BUILD_TIME": "unknown"}

    try:
        podman_build(spec, REPO / spec.context, args, [serving_builder])
        assert layers(edgetpu.ref) == layers(serving_builder)
    finally:
        podman("rmi", "-f", serving_builder, check=False)


def test_edgetpu_runtime_cannot_be_built_here_corals_apt_repository_is_unreachable() -> None:
    args = build_args(EDGETPU_BUILDER, ensure_base(log=False), git_revision())
    cmd = [
        "podman",
        "build",
        "--pull=never",
        "-f",
        str(REPO / EDGETPU_BUILDER.dockerfile),
        "-v",
        "/etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro",
    ]
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    r = subprocess.run(
        [*cmd, str(REPO / "serving-image")], env=environ(), capture_output=True, text=True, timeout=540
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0, "Dockerfile.edgetpu built: Coral's repository is reachable, so test that image"
    # The step that failed is the one that fetches Coral's apt key, and it failed on the network.
    failed_step = re.findall(r"STEP \d+/\d+: (RUN .*)", out)[-1]
    assert "packages.cloud.google.com/apt/doc/apt-key.gpg" in failed_step, out[-3000:]
    assert re.search(
        r"URLError|Name or service not known|Temporary failure in name resolution|"
        r"Connection refused|timed out|Network is unreachable|HTTP Error 403",
        out,
    ), out[-3000:]
