"""spec.model.source on the real node: a model from a PersistentVolumeClaim (a hostPath
PersistentVolume), and a model fetched from an https URI served by a pod in the cluster; a wrong
checksum never becomes ready and the rollout aborts with a condition naming it.

The serving image is the demo `v1` image (its own model baked in at /models); the source brings
`v2`'s model instead, so /metadata proves which file the server verified and serves. OCI image
volumes are not tested here: the real node's containerd 1.6 has none (docs/api.md).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from localworld import demoimages
from localworld.rollouts import ModelDeployments, OperatorProcess
from localworld.world import LocalWorld
from modelship import api

from .helpers import PORT, RESTRICTED, eventually

pytestmark = pytest.mark.e2e

TLS_PORT = 8443
# A file server in the serving image's own Python: HTTPS from a ConfigMap, with a Secret's key pair.
SERVE_HTTPS = f"""
import functools, http.server, ssl
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="/srv")
server = http.server.ThreadingHTTPServer(("0.0.0.0", {TLS_PORT}), handler)
tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
tls.load_cert_chain("/tls/tls.crt", "/tls/tls.key")
server.socket = tls.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


def model_deployment(name: str, world: LocalWorld, sha256: str, source: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "metadata": {"name": name},
        "spec": {
            "image": world.image("v1").ref,
            "model": {"name": name, "version": "v2", "sha256": sha256, "source": source},
            "replicas": 1,
            "port": PORT,
            "progressDeadline": "5m",
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "5s"}}]}},
        },
    }


def served_sha256(core: client.CoreV1Api, namespace: str, name: str) -> set[str]:
    """The artifact sha256 each of the ModelDeployment's ready pods says it verified."""
    found = set()
    for pod in core.list_namespaced_pod(namespace, label_selector=f"modelship.io/model={name}").items:
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            with urllib.request.urlopen(f"http://{pod.status.pod_ip}:{PORT}/metadata", timeout=5) as r:
                artifact = json.load(r)["artifact"]
            assert artifact["verified"] is True
            found.add(artifact["sha256"])
    return found


@pytest.fixture
def v2_bundle() -> Iterator[Path]:
    """A copy of the v2 model bundle where the kubelet (root) and the server (uid 10001) read it."""
    root = Path(tempfile.mkdtemp(prefix="modelship-pv-"))
    try:
        root.chmod(0o755)
        shutil.copytree(demoimages.bundle_dir("v2"), root / "fraud" / "v2")
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_model_from_a_pvc_is_verified_and_served(
    world: LocalWorld,
    api_client: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    v2_bundle: Path,
) -> None:
    core = client.CoreV1Api(api_client)
    pv = f"{namespace}-models"
    v2_sha = world.image("v2").model_sha256
    core.create_persistent_volume(
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "manual",
                "claimRef": {"namespace": namespace, "name": "models"},
                "hostPath": {"path": str(v2_bundle), "type": "Directory"},
            },
        }
    )
    try:
        core.create_namespaced_persistent_volume_claim(
            namespace,
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "models"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "storageClassName": "manual",
                    "volumeName": pv,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )
        mds = ModelDeployments(api_client, namespace)
        source = {"pvc": {"claimName": "models", "subPath": "fraud/v2", "path": "model.joblib"}}
        mds.create(model_deployment("from-pvc", world, v2_sha, source))
        status = mds.wait_phase("from-pvc", "Healthy", timeout=180)
        assert status["stableRevision"]
        assert served_sha256(core, namespace, "from-pvc") == {v2_sha}  # not the v1 model baked into the image
        [pod] = core.list_namespaced_pod(namespace, label_selector="modelship.io/model=from-pvc").items
        [mount] = [m for m in pod.spec.containers[0].volume_mounts if m.mount_path == api.MODEL_DIR]
        assert (mount.read_only, mount.sub_path) == (True, "fraud/v2")
    finally:
        core.delete_persistent_volume(pv)


def serve_https(core: client.CoreV1Api, namespace: str, world: LocalWorld, model: Path, tmp: Path) -> str:
    """A pod serving `model` over HTTPS behind a Service; returns the CA (its own certificate) PEM
    and leaves the URL's host (the Service's cluster IP: the cluster has no DNS) in the cert."""
    service = core.create_namespaced_service(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "model-store"},
            "spec": {
                "selector": {"app": "model-store"},
                "ports": [{"port": TLS_PORT, "targetPort": TLS_PORT}],
            },
        },
    )
    ip = service.spec.cluster_ip
    cert, key = tmp / "tls.crt", tmp / "tls.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=model-store",
         "-addext", f"subjectAltName=IP:{ip}", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    core.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "model-store-tls"},
            "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": cert.read_text(), "tls.key": key.read_text()},
        },
    )
    core.create_namespaced_config_map(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "models"},
            "binaryData": {"model.joblib": base64.b64encode(model.read_bytes()).decode()},
        },
    )
    core.create_namespaced_pod(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "model-store", "labels": {"app": "model-store"}},
            "spec": {
                "containers": [
                    {
                        "name": "https",
                        "image": world.image("v1").ref,
                        "command": ["python", "-c", SERVE_HTTPS],
                        "ports": [{"containerPort": TLS_PORT}],
                        "readinessProbe": {"tcpSocket": {"port": TLS_PORT}, "periodSeconds": 1},
                        "securityContext": RESTRICTED,
                        "volumeMounts": [
                            {"name": "models", "mountPath": "/srv", "readOnly": True},
                            {"name": "tls", "mountPath": "/tls", "readOnly": True},
                        ],
                    }
                ],
                "volumes": [
                    {"name": "models", "configMap": {"name": "models"}},
                    {"name": "tls", "secret": {"secretName": "model-store-tls"}},
                ],
            },
        },
    )

    def ready() -> bool:
        status = core.read_namespaced_pod("model-store", namespace).status
        return any(c.type == "Ready" and c.status == "True" for c in status.conditions or [])

    eventually("the in-cluster HTTPS model store to be ready", ready, timeout=60)
    return f"https://{ip}:{TLS_PORT}"


def test_a_model_from_an_https_uri_is_fetched_verified_and_a_wrong_checksum_aborts_the_rollout(
    world: LocalWorld,
    api_client: client.ApiClient,
    namespace: str,
    operator: OperatorProcess,
    tmp_path: Path,
) -> None:
    core = client.CoreV1Api(api_client)
    v1_sha, v2_sha = world.image("v1").model_sha256, world.image("v2").model_sha256
    base = serve_https(core, namespace, world, demoimages.bundle_dir("v2") / "model.joblib", tmp_path)
    core.create_namespaced_secret(
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "fetch-credentials"},
            "stringData": {"FETCH_CA_CERT": (tmp_path / "tls.crt").read_text()},
        },
    )
    mds = ModelDeployments(api_client, namespace)
    source = {"uri": {"url": f"{base}/model.joblib", "secretRef": {"name": "fetch-credentials"}}}
    mds.create(model_deployment("from-uri", world, v2_sha, source))
    stable = mds.wait_phase("from-uri", "Healthy", timeout=180)["stableRevision"]
    assert served_sha256(core, namespace, "from-uri") == {v2_sha}
    [pod] = core.list_namespaced_pod(namespace, label_selector="modelship.io/model=from-uri").items
    assert [c.name for c in pod.spec.init_containers] == ["fetch-model"]
    assert pod.status.init_container_statuses[0].state.terminated.exit_code == 0

    # The spec now claims v1's checksum for the file the URL serves (v2's): the new revision's
    # fetch refuses it, and the canary is aborted without ever becoming ready.
    apps = client.AppsV1Api(api_client)
    mds.patch("from-uri", {"model": {"version": "claimed-v1", "sha256": v1_sha}})
    ever_ready: set[str] = set()

    def aborted() -> dict[str, Any] | None:
        for d in apps.list_namespaced_deployment(
            namespace, label_selector="modelship.io/model=from-uri"
        ).items:
            if d.metadata.name != stable and (d.status.ready_replicas or 0) > 0:
                ever_ready.add(d.metadata.name)
        status = mds.status("from-uri")
        found: dict[str, Any] | None = (status.get("rollout") or {}).get("aborted")
        return status if found else None

    status = eventually("the rollout to abort on the checksum", aborted, timeout=180, interval=1)
    record = status["rollout"]["aborted"]
    assert record["reason"] == "ModelChecksumMismatch"
    assert v1_sha in record["message"] and v2_sha in record["message"]  # expected and actual
    assert "fetch-model" in record["message"]
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ModelChecksumMismatch")
    assert v1_sha in progressing["message"]
    assert status["phase"] == "Degraded"
    assert status["stableRevision"] == stable
    assert ever_ready == set()
    assert served_sha256(core, namespace, "from-uri") == {v2_sha}  # stable kept serving the verified model
