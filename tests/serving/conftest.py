"""Fixtures for the serving tests: sample model bundles built locally, and real server processes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver import sample_models
from modelserver.sample_models import Bundle

from .serving_helpers import Server


@pytest.fixture(scope="session")
def bundles_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("bundles")


@pytest.fixture(scope="session")
def sklearn_bundle(bundles_dir: Path) -> Bundle:
    return sample_models.sklearn_bundle(bundles_dir / "sklearn")


@pytest.fixture(scope="session")
def onnx_bundle(bundles_dir: Path) -> Bundle:
    return sample_models.onnx_bundle(bundles_dir / "onnx")


@pytest.fixture(scope="session")
def tflite_bundle(bundles_dir: Path) -> Bundle:
    return sample_models.tflite_bundle(bundles_dir / "tflite")


@pytest.fixture(scope="session")
def edgetpu_bundle(bundles_dir: Path) -> Bundle:
    """An ``_edgetpu.tflite`` stand-in with its plain int8 twin beside it (see sample_models)."""
    return sample_models.tflite_bundle(bundles_dir / "edgetpu", edgetpu_standin=True)


@pytest.fixture
def copy_bundle(tmp_path: Path) -> CopyBundle:
    return CopyBundle(tmp_path)


class CopyBundle:
    """A private copy of a bundle directory, for tests that tamper with files."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(self, bundle: Bundle) -> Path:
        dest = self.root / bundle.model_path.parent.name
        shutil.copytree(bundle.model_path.parent, dest)
        return dest / bundle.model_path.name


def _serve(env: dict[str, str], log: Path) -> Iterator[Server]:
    server = Server(env).start(log)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def sk_server(sklearn_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = sklearn_bundle.env(name="risk", version="7") | {
        "MAX_BODY_BYTES": "65536",
        "MAX_BATCH_ROWS": "64",
        "GIT_REVISION": "0123abc",
        "BUILD_TIME": "2026-01-02T03:04:05Z",
        "IMAGE_VERSION": "0.1.0",
        "IMAGE_DIGEST": "sha256:" + "ab" * 32,
    }
    yield from _serve(env, tmp_path_factory.mktemp("logs") / "sklearn.log")


@pytest.fixture(scope="session")
def onnx_server(onnx_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(onnx_bundle.env(name="risk-onnx"), tmp_path_factory.mktemp("logs") / "onnx.log")


@pytest.fixture(scope="session")
def coral_server(edgetpu_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """ACCELERATOR=coral on a machine without libedgetpu: must fall back to the CPU twin."""
    twin = edgetpu_bundle.model_path.with_name("model.tflite")
    from modelserver.artifact import sha256_of

    env = edgetpu_bundle.env(name="risk-tpu") | {"ACCELERATOR": "coral", "MODEL_CPU_SHA256": sha256_of(twin)}
    yield from _serve(env, tmp_path_factory.mktemp("logs") / "coral.log")
