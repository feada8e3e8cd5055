"""The container and the benchmark set-up: static checks of what the issue requires of them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .serving_helpers import REPO

pytestmark = pytest.mark.unit

IMAGE_DIR = REPO / "serving-image"
DOCKERFILES = [IMAGE_DIR / "Dockerfile", IMAGE_DIR / "Dockerfile.edgetpu"]


def _hadolint() -> str:
    return str(Path(sys.executable).parent / "hadolint")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    r = subprocess.run(
        [_hadolint(), "--failure-threshold", "info", str(dockerfile)], capture_output=True, text=True
    )
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_shape(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    assert re.search(r"ARG PYTHON_IMAGE=python:3\.11-slim@sha256:[0-9a-f]{64}\n", text), (
        "base pinned by digest"
    )
    assert "--require-hashes" in text
    # The lock is copied and installed before the code, so code changes reuse the dependency layer.
    assert text.index("COPY requirements.lock") < text.index("COPY modelserver")
    final = text[text.rindex("FROM ${PYTHON_IMAGE}") :]
    assert "USER 10001:10001" in final
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make)\b", final)
    for label in ("revision", "created", "version"):
        assert f"org.opencontainers.image.{label}=" in text
    assert "io.modelship.model.version=" in text
    assert "PYTHONDONTWRITEBYTECODE=1" in final  # nothing written at run time: read-only root works


def test_dockerignore_keeps_models_and_caches_out() -> None:
    lines = (IMAGE_DIR / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*"  # everything excluded, then only the lock and the package
    assert set(ln for ln in lines if ln.startswith("!")) == {"!requirements.lock", "!modelserver/"}


def test_lock_has_hashes_for_every_pin() -> None:
    blocks = re.split(r"\n(?=\S)", (IMAGE_DIR / "requirements.lock").read_text())
    pins = [b for b in blocks if re.match(r"[a-z0-9_.-]+==", b)]
    assert pins and all("--hash=sha256:" in b for b in pins)


def _pins(path: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9_.-]+)==([^\s\\;]+)", path.read_text(), re.M))


def test_bench_venv_loads_the_model_with_the_same_libraries() -> None:
    image = _pins(IMAGE_DIR / "requirements.lock")
    bench = _pins(REPO / "bench" / "requirements-bench.lock")
    for pkg in ("scikit-learn", "numpy", "joblib", "scipy"):
        assert bench[pkg] == image[pkg], pkg


def test_bench_results_file_has_three_servers_side_by_side() -> None:
    report = json.loads((REPO / "bench" / "results" / "serving.json").read_text())
    results = report["results"]
    assert {"modelserver", "mlserver", "flask"} <= set(results)
    for server in results.values():
        assert set(server) == {"1", "32"}
        for entry in server.values():
            for key in (
                "rps",
                "p50_ms",
                "p99_ms",
                "cold_start_s",
                "rss_mb",
                "ratio_vs_mlserver",
                "ratio_vs_flask",
            ):
                assert isinstance(entry[key], (int, float)), key
