"""The serving container learns which image it runs: the operator sets IMAGE and IMAGE_DIGEST,
which the model server reports in /metadata (an image cannot contain its own digest)."""

from __future__ import annotations

import pytest

from modelship.core import manifests, revisions

from .enginesim import OWNER, spec

pytestmark = pytest.mark.unit


def test_deployment_tells_the_server_its_image_and_digest() -> None:
    digest = "sha256:" + "d" * 64
    s = spec(image=f"registry.example/fraud@{digest}")
    deployment = manifests.deployment(OWNER, "fraud-0123456789", revisions.template_of(s), s.replicas)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["IMAGE"] == f"registry.example/fraud@{digest}" == container["image"]
    assert env["IMAGE_DIGEST"] == digest
