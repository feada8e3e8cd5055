"""spec.template on the real node and Traefik: a ModelDeployment whose pods take a token from a
Secret, run a sidecar and use a service account of their own, rolled out by canary under load.
The sidecar is the node's own `pause` image (the only other image a pod can run here)."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from devcluster import images
from devcluster.cluster import LocalCluster
from localworld.rollouts import model_deployment

from .conftest import Rollout
from .helpers import eventually, until_served

pytestmark = pytest.mark.e2e

NAME = "risk"
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {"duration": "5s"}}]
TOKEN = "s3cret-token"


def template(sidecar_image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"team": "risk"}},
        "spec": {
            "serviceAccountName": "model-runner",
            "containers": [
                {
                    "name": "model",
                    "env": [
                        {
                            "name": "API_TOKEN",
                            "valueFrom": {"secretKeyRef": {"name": "risk-api", "key": "token"}},
                        }
                    ],
                },
                {"name": "heartbeat", "image": sidecar_image},
            ],
        },
    }


def test_a_secret_env_var_a_sidecar_and_a_service_account_roll_out_by_canary(
    rollout: Rollout, local_cluster: LocalCluster, api_client: client.ApiClient
) -> None:
    core, ns = client.CoreV1Api(api_client), rollout.namespace
    core.create_namespaced_secret(ns, {"metadata": {"name": "risk-api"}, "stringData": {"token": TOKEN}})
    core.create_namespaced_service_account(ns, {"metadata": {"name": "model-runner"}})
    manifest = model_deployment(NAME, rollout.world.image("v1"), "v1", STEPS)
    manifest["spec"]["template"] = template(images.sandbox_image())
    rollout.create(manifest)
    v1 = rollout.mds.wait_phase(NAME, "Healthy", timeout=180)["stableRevision"]
    until_served(rollout.endpoint(NAME))  # the zero-errors count below starts once Traefik routes
    load = rollout.load(rollout.endpoint(NAME), rate=20, duration=120)
    eventually("v1 to answer through Traefik", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)

    rollout.set_image(NAME, "v2")
    status = rollout.mds.wait_phase(NAME, "Healthy", timeout=180)
    v2 = status["stableRevision"]
    assert v2 != v1
    eventually("v2 to serve", lambda: rollout.served()[v2] > 0, timeout=30)
    summary = load.stop()
    assert summary.errors == 0 and set(summary.codes) == {200}, rollout.errors_report(*summary.lines())

    pods = core.list_namespaced_pod(ns, label_selector=f"modelship.io/revision={v2}").items
    assert len(pods) == 2
    for pod in pods:
        assert pod.spec.service_account_name == "model-runner"
        assert pod.metadata.labels["team"] == "risk"
        assert [c.name for c in pod.spec.containers] == ["model", "heartbeat"]
        assert all(c.ready for c in pod.status.container_statuses), pod.status.container_statuses
        # The Secret's value reached the model container's environment.
        seen = local_cluster.kubectl(
            "exec",
            "-n",
            ns,
            pod.metadata.name,
            "-c",
            "model",
            "--",
            "python",
            "-c",
            "import os; print(os.environ['API_TOKEN'])",
        )
        assert seen.strip() == TOKEN
