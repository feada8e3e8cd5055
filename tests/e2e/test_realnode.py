"""The real node: a pod of the serving image, run by the kubelet under Pod Security `restricted`,
as non-root on a read-only root filesystem, restarted when its liveness probe fails."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster.cluster import KubectlError, LocalCluster
from devcluster.nodeconfig import NODE_NAME
from localworld.world import LocalWorld

from .helpers import PORT, RESTRICTED, eventually, is_ready

pytestmark = pytest.mark.e2e
UNHEALTHY_AFTER = 4  # seconds; the fault knob that makes /healthz fail


def serving_pod(world: LocalWorld, name: str, **env: str) -> dict[str, Any]:
    image = world.image("v1")
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "containers": [
                {
                    "name": "modelserver",
                    "image": image.ref,
                    "ports": [{"name": "http", "containerPort": PORT}],
                    "env": [{"name": "MODEL_SHA256", "value": image.model_sha256}]
                    + [{"name": k, "value": v} for k, v in env.items()],
                    "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1},
                    "livenessProbe": {
                        "httpGet": {"path": "/healthz", "port": "http"},
                        "periodSeconds": 1,
                        "failureThreshold": 2,
                    },
                    "securityContext": RESTRICTED,
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def test_a_serving_pod_runs_restricted_non_root_read_only_and_is_restarted_when_liveness_fails(
    local_cluster: LocalCluster, world: LocalWorld, api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    pod = serving_pod(world, "live", MODELSERVER_FAULT_UNHEALTHY_AFTER=str(UNHEALTHY_AFTER))
    core.create_namespaced_pod(namespace, pod)
    ready = eventually(
        "the pod Ready on the real node",
        lambda: p if is_ready(p := core.read_namespaced_pod("live", namespace)) else None,
        timeout=60,
    )
    assert ready.spec.node_name == NODE_NAME
    assert ready.status.pod_ip.startswith("10.77.")

    def exec_(*cmd: str) -> str:
        return local_cluster.kubectl("exec", "-n", namespace, "live", "--", *cmd)

    assert exec_("id", "-u").strip() == "10001"  # the image's user; runAsNonRoot held
    with pytest.raises(KubectlError, match="Read-only file system"):
        exec_("touch", "/app/written")
    exec_("touch", "/tmp/scratch")  # the one writable place, an emptyDir

    restarted = eventually(
        "the kubelet to restart the container after /healthz failed",
        lambda: (
            (s := core.read_namespaced_pod("live", namespace).status.container_statuses[0]).restart_count >= 1
            and s
        ),
        timeout=60,
    )
    assert restarted.last_state.terminated is not None  # the container that was killed
    events = [
        (e.reason, e.message or "")
        for e in core.list_namespaced_event(namespace, field_selector="involvedObject.name=live").items
    ]
    assert any(r == "Unhealthy" and "Liveness probe failed" in m for r, m in events), events
    assert any(r == "Killing" and "failed liveness probe" in m for r, m in events), events
    logs = local_cluster.kubectl("logs", "-n", namespace, "live", "--previous")
    assert "FAULT INJECTION IS ON" in logs


def test_restricted_refuses_a_pod_that_would_run_as_root(
    world: LocalWorld, api_client: client.ApiClient, namespace: str
) -> None:
    pod = serving_pod(world, "root")
    pod["spec"]["containers"][0]["securityContext"] = {"runAsUser": 0}
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(api_client).create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    body = json.loads(refused.value.body)
    assert 'violates PodSecurity "restricted:latest"' in body["message"], body["message"]
