"""The demo's models as images (hack/localworld/demoimages.py): thin layers on the serving image."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from imagebuild.build import Built, inspect, layers
from imagebuild.podman import images_root, podman
from localworld import demomodels
from localworld.demoimages import (
    ALL,
    VERSION_LABEL,
    ModelImage,
    build_model_images,
    bundle_dir,
    file_digests,
)

from .conftest import repo
from .helpers import container, free_port, http, wait_ready

pytestmark = pytest.mark.images

CLASSES = {"low", "medium", "high"}


@pytest.fixture(scope="module")
def model_images(serving_image: Built) -> dict[str, ModelImage]:
    return build_model_images(serving_image.ref)


def run_server(image: ModelImage, *extra: str) -> list[str]:
    """`podman run` arguments for a model image as a pod would run it (nothing mounted)."""
    return [
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--memory=1g",
        "-e",
        f"MODEL_SHA256={image.model_sha256}",
        *extra,
    ]


def test_builds_every_demo_model_and_the_sample(model_images: dict[str, ModelImage]) -> None:
    assert list(model_images) == ["sklearn", *demomodels.VERSIONS] == list(ALL)
    assert len({m.ref for m in model_images.values()}) == len(ALL)
    for name, m in model_images.items():
        assert m.ref.startswith(f"localhost/modelship/demo-model:{name}-"), m.ref
    # The faulty images carry v2's very model: only their environment differs.
    assert model_images["v3-bad-errors"].model_sha256 == model_images["v2"].model_sha256
    assert model_images["v3-slow"].model_sha256 == model_images["v2"].model_sha256


def test_each_is_a_thin_layer_on_the_serving_image(
    serving_image: Built, model_images: dict[str, ModelImage]
) -> None:
    base_layers = layers(serving_image.ref)
    base_size = int(str(inspect(serving_image.ref)["Size"]))
    for name, m in model_images.items():
        own = layers(m.ref)
        assert own[: len(base_layers)] == base_layers, name
        assert 1 <= len(own) - len(base_layers) <= 3, (name, own)
        bundle_bytes = sum(p.stat().st_size for p in bundle_dir(name).rglob("*") if p.is_file())
        size = int(str(inspect(m.ref)["Size"]))
        # The bundle plus a tar layer's headers and padding: well under a megabyte over.
        assert base_size + bundle_bytes <= size <= base_size + bundle_bytes + 1_000_000, (name, size)


def _env(ref: str) -> dict[str, str]:
    config = inspect(ref)["Config"]
    assert isinstance(config, dict)
    return dict(e.split("=", 1) for e in config["Env"])


def test_faulty_ones_bake_their_fault_knobs_and_each_is_labelled(
    serving_image: Built, model_images: dict[str, ModelImage]
) -> None:
    base = _env(serving_image.ref)
    for name, m in model_images.items():
        config = inspect(m.ref)["Config"]
        assert isinstance(config, dict)
        env = _env(m.ref)
        # What the model image adds to the serving image's environment: its knobs, nothing else.
        baked = {k: v for k, v in env.items() if base.get(k) != v}
        expected = demomodels.FAULTY[name][1] if name in demomodels.FAULTY else {}
        assert baked == expected == m.env, name
        assert env["MODEL_PATH"] == "/models/model.joblib"  # the serving image's default, unchanged
        assert config["Labels"][VERSION_LABEL] == name
    assert model_images["v3-bad-errors"].env == {"MODELSERVER_FAULT_ERROR_RATIO": "0.3"}
    assert model_images["v3-slow"].env == {"MODELSERVER_FAULT_LATENCY": "0.5"}


def test_models_dir_holds_the_bundle_owned_by_the_server(model_images: dict[str, ModelImage]) -> None:
    for name, m in model_images.items():
        out = podman(
            "run",
            "--rm",
            "--pull=never",
            "--network=none",
            "--entrypoint",
            "sh",
            m.ref,
            "-c",
            "cd /models && sha256sum * && stat -c '%u:%g %n' model.joblib",
            timeout=120,
        ).stdout
        lines = out.strip().splitlines()
        sums = {line.split()[1]: line.split()[0] for line in lines[:-1]}
        assert sums == file_digests(bundle_dir(name)), name
        assert sums["model.joblib"] == m.model_sha256
        assert lines[-1] == "10001:10001 model.joblib"


def test_a_second_call_finds_them_in_about_a_second(
    serving_image: Built, model_images: dict[str, ModelImage]
) -> None:
    ids = {n: inspect(m.ref)["Id"] for n, m in model_images.items()}
    start = time.monotonic()
    again = build_model_images(serving_image.ref)
    seconds = time.monotonic() - start
    assert again == model_images
    assert {n: inspect(m.ref)["Id"] for n, m in again.items()} == ids  # nothing rebuilt
    assert seconds < 5, seconds


def test_v1_serves_its_baked_model(model_images: dict[str, ModelImage]) -> None:
    v1 = model_images["v1"]
    port = free_port()
    with container(v1.ref, *run_server(v1, "-e", "HOST=127.0.0.1", "-e", f"PORT={port}")) as name:
        wait_ready(name, port)
        assert http(port, "/readyz")[0] == 200
        code, body = http(port, "/predict", {"instances": [[10.5, 6.1, 0.2, -1.3], [9.0, 4.0, 2.5, 1.0]]})
        assert code == 200, body
        predictions = json.loads(body)["predictions"]
        assert len(predictions) == 2 and set(predictions) <= CLASSES
        code, body = http(port, "/metadata")
        assert code == 200 and '"verified": true' in json.dumps(json.loads(body)), body


def test_the_baked_fault_knobs_act(model_images: dict[str, ModelImage]) -> None:
    row = {"instances": [[10.5, 6.1, 0.2, -1.3]]}
    bad = model_images["v3-bad-errors"]
    port = free_port()
    with container(bad.ref, *run_server(bad, "-e", "HOST=127.0.0.1", "-e", f"PORT={port}")) as name:
        wait_ready(name, port)
        codes = [http(port, "/predict", row)[0] for _ in range(60)]
        # 30% fail: none failing (0.7^60) or none succeeding (0.3^60) is not chance.
        assert set(codes) == {200, 500}, codes
    slow = model_images["v3-slow"]
    port = free_port()
    with container(slow.ref, *run_server(slow, "-e", "HOST=127.0.0.1", "-e", f"PORT={port}")) as name:
        wait_ready(name, port)
        start = time.monotonic()
        assert http(port, "/predict", row)[0] == 200
        assert time.monotonic() - start >= 0.5


def test_imagebuild_models_prints_and_records_them(model_images: dict[str, ModelImage]) -> None:
    # `make images` runs `python -m imagebuild build`, which ends with these (cached here).
    r = subprocess.run(
        [sys.executable, "-m", "imagebuild", "models"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(repo() / "hack")},
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    record = json.loads((images_root() / "demo-models.json").read_text())
    assert set(record) == set(ALL)
    for name, m in model_images.items():
        assert record[name] == {"ref": m.ref, "model_sha256": m.model_sha256, "env": m.env}
        assert m.ref in r.stdout
