"""Fixtures for the image tests: the images as `make images` builds them (a cache hit after it),
and a sample model bundle to mount. Without podman these fail with the reason; nothing is skipped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver import sample_models
from modelserver.sample_models import Bundle

from devcluster import reap
from imagebuild.build import OPERATOR, SERVING, Built, build

from .helpers import container, free_port, wait_ready


@pytest.fixture(scope="session", autouse=True)
def reaped() -> None:
    """Containers a killed earlier run left (devcluster.reap) go before this run starts its own."""
    reap.reap_containers()


@pytest.fixture(scope="session")
def serving_image() -> Built:
    return build(SERVING, log=False)


@pytest.fixture(scope="session")
def operator_image() -> Built:
    return build(OPERATOR, log=False)


@pytest.fixture(scope="session")
def sklearn_bundle(tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    # The directory is mounted as /models; the server's uid (10001) must be able to read it.
    root = tmp_path_factory.mktemp("image-bundles")
    root.chmod(0o755)
    return sample_models.sklearn_bundle(root / "sklearn")


def model_args(bundle: Bundle, sha256: str | None = None) -> list[str]:
    """Mount the bundle read-only at /models and point the server at it."""
    return [
        "-v",
        f"{bundle.model_path.parent}:/models:ro",
        "-e",
        f"MODEL_PATH=/models/{bundle.model_path.name}",
        "-e",
        f"MODEL_SHA256={sha256 or bundle.sha256}",
        "-e",
        "MODEL_NAME=risk",
        "-e",
        "MODEL_VERSION=3",
    ]


class Server:
    def __init__(self, name: str, port: int, image: Built) -> None:
        self.name, self.port, self.image = name, port, image


@pytest.fixture(scope="session")
def server(serving_image: Built, sklearn_bundle: Bundle) -> Iterator[Server]:
    """The serving image as a pod would run it: read-only root, no capabilities, limits."""
    port = free_port()
    args = [
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--memory=1g",
        "--pids-limit=256",
        "-e",
        "HOST=127.0.0.1",
        "-e",
        f"PORT={port}",
        "-e",
        f"IMAGE={serving_image.dev_ref}",
        "-e",
        f"IMAGE_DIGEST={serving_image.digest}",
        *model_args(sklearn_bundle),
    ]
    with container(serving_image.dev_ref, *args) as name:
        wait_ready(name, port)
        yield Server(name, port, serving_image)


def repo() -> Path:
    return Path(__file__).resolve().parents[2]
