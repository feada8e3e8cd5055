"""The operator image: its CLI works inside, as the chart runs it (non-root, read-only root)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from imagebuild.build import Built
from imagebuild.podman import podman

pytestmark = pytest.mark.images

RUN = ("run", "--rm", "--pull=never", "--read-only", "--network=none", "--cap-drop=ALL")


def test_modelship_help_works_inside(operator_image: Built) -> None:
    r = podman(*RUN, operator_image.dev_ref, "--help", check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: modelship")
    for command in ("run", "crd"):
        assert command in r.stdout


def test_modelship_crd_inside_prints_the_same_crd_as_the_source(
    operator_image: Built, tmp_path: Path
) -> None:
    # `modelship crd` writes a file; the root is read-only, so it writes to the container's stdout.
    r = podman(*RUN, operator_image.dev_ref, "crd", "--output", "/dev/stdout", check=False, timeout=120)
    assert r.returncode == 0, r.stderr
    text, _, last = r.stdout.rstrip("\n").rpartition("\n")
    assert last == "wrote /dev/stdout"
    crd = yaml.safe_load(text)
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "modeldeployments.modelship.io"
    # The image was built from this work tree: it must print what the source prints.
    ours = tmp_path / "crd.yaml"
    subprocess.run(
        [sys.executable, "-m", "modelship", "crd", "--output", str(ours)], check=True, capture_output=True
    )
    assert crd == yaml.safe_load(ours.read_text())


def test_operator_runs_as_the_charts_non_root_user(operator_image: Built) -> None:
    r = podman(
        *RUN,
        "--entrypoint",
        "python",
        operator_image.dev_ref,
        "-c",
        "import os; print(os.getuid(), os.getgid())",
        timeout=120,
    )
    assert r.stdout.split() == ["65532", "65532"]
