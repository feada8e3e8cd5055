"""What the operator tells the serving container through its env: which image it runs (IMAGE and
IMAGE_DIGEST, which the model server reports in /metadata: an image cannot contain its own digest),
and what it needs to issue feedback tokens (its pod IP and the model's shared key)."""

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
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    assert env["IMAGE"] == f"registry.example/fraud@{digest}" == container["image"]
    assert env["IMAGE_DIGEST"] == digest


def test_deployment_gives_the_server_its_pod_ip_and_the_models_feedback_key() -> None:
    s = spec()
    deployment = manifests.deployment(OWNER, "fraud-0123456789", revisions.template_of(s), s.replicas)
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    sources = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    assert sources["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    # Every revision of one ModelDeployment shares the key, so any pod verifies any pod's tokens;
    # optional, so pods still start where the operator may not create the Secret.
    assert sources["FEEDBACK_KEY"] == {
        "secretKeyRef": {"name": f"{OWNER.name}-feedback-key", "key": "key", "optional": True}
    }
