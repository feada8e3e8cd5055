"""Not part of the suite (no `test_` file name): tests/integration/test_killed_run.py and
tests/e2e/test_killed_node.py run one of these in a pytest of its own, which brings the session's
local cluster up (with the real node and a pod on it for the e2e one) and is then SIGKILLed."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client

from devcluster import images, procs
from devcluster.cluster import ExistingCluster, LocalCluster, wait_for
from localworld.world import pin_namespace

# What Pod Security `restricted` asks of a container.
RESTRICTED = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def ready(state_dir: Path) -> None:
    Path(os.environ["KILLED_RUN_READY"]).write_text(str(state_dir))
    time.sleep(600)


def test_hold_the_cluster_until_killed(cluster: ExistingCluster) -> None:
    assert isinstance(cluster, LocalCluster)
    # A recorded process without the death signal (as one that cleared it would be, or a daemon
    # some component starts): only the reaper ends it.
    stray = subprocess.Popen(["sleep", "600"], start_new_session=True)
    record = procs.Record("stray", stray.pid, procs.start_time(stray.pid) or 0)
    (cluster.state_dir / f"stray{procs.RECORD_SUFFIX}").write_text(record.to_json())
    ready(cluster.state_dir)


@pytest.mark.e2e  # the session's cluster gets the real node
def test_hold_a_pod_on_the_real_node_until_killed(
    cluster: ExistingCluster, api_client: client.ApiClient
) -> None:
    assert isinstance(cluster, LocalCluster) and cluster.node is not None
    core = client.CoreV1Api(api_client)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="killed")))
    pin_namespace(api_client, "killed")
    wait_for("the default ServiceAccount", lambda: core.list_namespaced_service_account("killed").items)
    pause = cluster.node.load([images.sandbox_image()])[images.sandbox_image()]
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "left-behind"},
        "spec": {"containers": [{"name": "pause", "image": pause, "securityContext": RESTRICTED}]},
    }
    core.create_namespaced_pod("killed", pod)
    wait_for(
        "the pod Running",
        lambda: core.read_namespaced_pod("left-behind", "killed").status.phase == "Running",
        timeout=60,
    )
    ready(cluster.state_dir)
