"""The operator image's inputs stay in step with the project: locked deps, pinned base."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lock = (REPO / "operator" / "requirements.lock").read_text()
    pinned = {m.group(1).lower() for m in re.finditer(r"^([A-Za-z0-9_.-]+)==\S+ \\$", lock, re.M)}
    missing = {_name(r) for r in project["dependencies"]} - pinned
    assert not missing, f"operator/requirements.lock lacks {missing}: run `make operator-lock`"
    hashes = r"(?:    --hash=sha256:[0-9a-f]{64}(?: \\)?\n)+"
    blocks = re.findall(rf"^[A-Za-z0-9_.-]+==\S+ \\\n{hashes}", lock, re.M)
    assert len(blocks) == len(pinned), "every pinned package carries its hashes"


def _base(dockerfile: Path) -> str:
    match = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile.read_text(), re.M)
    assert match, f"{dockerfile} does not declare ARG PYTHON_IMAGE"
    return match.group(1)


def test_operator_and_serving_images_share_one_digest_pinned_base() -> None:
    operator = _base(REPO / "operator" / "Dockerfile")
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", operator)
    assert operator == _base(REPO / "serving-image" / "Dockerfile")
