"""What is in (and not in) both images: labels, contents, size, SBOM, and the build's printout."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from imagebuild.build import OPERATOR, SERVING, SIZE_BUDGET_MB, Built, build, git_revision, inspect
from imagebuild.podman import images_root
from imagebuild.sbom import mounted

pytestmark = pytest.mark.images
REPO = Path(__file__).resolve().parents[2]
SPECS = {s.name: s for s in (SERVING, OPERATOR)}
LOCKS = {
    SERVING.name: REPO / "serving-image/requirements.lock",
    OPERATOR.name: REPO / "operator/requirements.lock",
}


@pytest.fixture(scope="module", params=sorted(SPECS))
def image(request: pytest.FixtureRequest) -> Built:
    return build(SPECS[request.param], log=False)


def test_oci_labels_say_what_was_built(image: Built) -> None:
    labels = inspect(image.ref)["Labels"]
    assert isinstance(labels, dict)
    assert labels["org.opencontainers.image.revision"] == image.revision
    assert image.revision.split("-")[0] == git_revision().split("-")[0]
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", image.revision)
    created = datetime.strptime(labels["org.opencontainers.image.created"], "%Y-%m-%dT%H:%M:%SZ")
    assert created.year >= 2025
    assert labels["org.opencontainers.image.version"] == image.version == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"


def test_no_compilers_pip_cache_or_model_inside(image: Built) -> None:
    with mounted(image.ref) as root:
        compilers = [
            p
            for pat in ("gcc*", "g++*", "cc", "c++", "clang*", "make", "*-linux-gnu-gcc*")
            for d in ("usr/bin", "usr/local/bin")
            for p in (root / d).glob(pat)
        ]
        pip_caches = [p for p in root.glob("**/.cache/pip") if p.is_dir()] + list(root.glob("root/.cache/*"))
        # onnxruntime and scikit-learn ship small test models and datasets inside their packages:
        # those are libraries' files. A model of ours would be a bundle file, or any model file
        # outside the Python packages.
        in_packages = ("opt/venv/lib", "usr/lib/python3")
        models = [
            p.relative_to(root).as_posix()
            for ext in ("joblib", "onnx", "tflite", "pkl")
            for p in root.glob(f"**/*.{ext}")
        ]
        ours = [
            m for m in models if m.rsplit("/", 1)[-1].startswith("model") or not m.startswith(in_packages)
        ]
        models_dir = list((root / "models").glob("*")) if (root / "models").is_dir() else []
    assert compilers == []
    assert pip_caches == []
    assert ours == [] and models_dir == []


def test_size_within_budget(image: Built) -> None:
    budget = SIZE_BUDGET_MB[image.name]
    size_mb = image.size / 1e6
    assert size_mb <= budget, f"{image.name} is {size_mb:.0f} MB, over its {budget} MB budget"


def test_sbom_lists_the_locked_packages_at_their_versions(image: Built) -> None:
    assert image.sbom is not None
    sbom = Path(image.sbom)
    assert sbom.parent == image.cache_dir  # beside the image's record in the cache
    doc = json.loads(sbom.read_text())
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    assert doc["metadata"]["component"]["name"] == image.name
    found = {c["purl"].split("@")[0].removeprefix("pkg:pypi/"): c["version"] for c in doc["components"]}
    locked = dict(re.findall(r"^([a-z0-9][a-z0-9._-]*)==([^\s\\]+)", LOCKS[image.name].read_text(), re.M))
    assert locked
    for name, version in locked.items():
        assert found.get(re.sub(r"[-_.]+", "-", name).lower()) == version, name


def test_make_images_prints_each_digest_and_sbom() -> None:
    # Usually all cached by now: the quick second run. Checked against the records that run wrote
    # (not a fresh build here: a commit in between would make a new image).
    r = subprocess.run(
        [sys.executable, "-m", "imagebuild", "build"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "hack")},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    latest = json.loads((images_root() / "latest.json").read_text())
    for spec in (SERVING, OPERATOR):
        built = latest[spec.name]
        block = r.stdout[r.stdout.index(f"\n{spec.name}: ") :]
        assert f"digest: {built['digest']}" in block
        assert f"sbom:   {built['sbom']}" in block
        assert Path(built["sbom"]).is_file()
