"""docs/quickstart.md on the real node, as written: the page's `<!-- test: run -->` blocks run in
order in one bash, with kubectl on a kubeconfig whose namespace is the test's. What kind does in
the page's other steps is done by what stands in for it here: the serving image built by
`make images` and imported into the node's containerd by digest, the operator as a process, the
world's Prometheus with the recommended scrape job.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from devcluster.cluster import LocalCluster
from imagebuild.build import SERVING
from imagebuild.build import build as build_image
from localworld import docblocks
from localworld.rollouts import ModelDeployments, OperatorProcess
from localworld.world import LocalWorld

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "docs" / "quickstart.md"
PV = "quickstart-models"  # examples/quickstart/models.yaml


def runnable_blocks() -> list[str]:
    return docblocks.runnable_blocks(PAGE)


def test_the_page_marks_the_steps_this_test_runs() -> None:
    blocks = runnable_blocks()
    assert len(blocks) == 5, blocks
    assert "examples/quickstart/iris.yaml" in blocks[2] and "kubectl patch md iris" in blocks[4]
    assert "examples/quickstart/traffic.yaml" in blocks[3]


@pytest.fixture
def models() -> Iterator[Path]:
    """Where the models go: the node is this machine, so a directory here; the kubelet (root) and
    the server (uid 10001) must reach it, which pytest's private tmp_path does not allow."""
    root = Path(tempfile.mkdtemp(prefix="modelship-quickstart-"))
    root.chmod(0o755)
    try:
        yield root / "models"
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_quickstart_rolls_out_v2_of_a_model_from_a_pvc_as_written(
    world: LocalWorld,
    local_cluster: LocalCluster,
    api_client: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    models: Path,
    tmp_path: Path,
) -> None:
    assert local_cluster.node is not None
    serving = build_image(SERVING, sbom=False, log=False)  # step 2: the image, by digest
    image = local_cluster.node.load([serving.ref])[serving.ref]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(local_cluster.kubectl("config", "view", "--raw"))
    local_cluster.kubectl(
        "--kubeconfig", str(kubeconfig), "config", "set-context", "--current", f"--namespace={namespace}"
    )
    env = {
        **local_cluster.env,
        "KUBECONFIG": str(kubeconfig),
        "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{local_cluster.env['PATH']}",
        "MODELS": str(models),
        "IMAGE": image,
    }
    script = docblocks.script(PAGE)
    try:
        done = subprocess.run(
            ["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"

        status = ModelDeployments(api_client, namespace).status("iris")
        assert status["phase"] == "Healthy"
        v2 = (models / "iris" / "2" / "model.joblib").read_bytes()
        apps = client.AppsV1Api(api_client)
        deployment = apps.read_namespaced_deployment(status["stableRevision"], namespace)
        env_of = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}
        assert (env_of["MODEL_VERSION"], env_of["MODEL_SHA256"]) == ("2", hashlib.sha256(v2).hexdigest())
        assert deployment.status.ready_replicas == 2  # each pod verified that file before it was ready
        # The canary was judged by the error rate of the page's traffic, and passed.
        events = client.CoreV1Api(api_client).list_namespaced_event(
            namespace, field_selector="involvedObject.name=iris"
        )
        reasons = [e.reason for e in events.items]
        assert "AnalysisSuccessful" in reasons and "AnalysisFailed" not in reasons, reasons
        assert "iris" in done.stdout, done.stdout  # `kubectl modelship status iris` printed
    finally:
        local_cluster.kubectl("delete", "persistentvolume", PV, "--wait=false", check=False)
