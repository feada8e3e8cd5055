"""Pure parts of the local control plane tooling: go.mod generation, cache keys, node and PKI material."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from devcluster import build, istio, nodes, pki
from devcluster.cluster import LocalCluster, write_kubeconfig
from devcluster.nodeconfig import NODE_IP

pytestmark = pytest.mark.unit

KUBE_GOMOD = """module k8s.io/kubernetes

go 1.26.0

godebug default=go1.26

require (
	github.com/blang/semver/v4 v4.0.0
	k8s.io/api v0.0.0
)

replace (
	k8s.io/api => ./staging/src/k8s.io/api
	k8s.io/client-go => ./staging/src/k8s.io/client-go
	github.com/example/fork => github.com/example/fork v1.2.3
)

replace k8s.io/kubectl => ./staging/src/k8s.io/kubectl
"""


def test_staging_replaces_map_every_local_staging_path_to_the_published_version() -> None:
    assert build.staging_replaces(KUBE_GOMOD, "v1.37.2") == [
        ("k8s.io/api", "v0.37.2"),
        ("k8s.io/client-go", "v0.37.2"),
        ("k8s.io/kubectl", "v0.37.2"),
    ]


def test_godebug_lines_are_copied_from_single_line_and_block_forms() -> None:
    assert build.godebug_lines(KUBE_GOMOD) == ["godebug default=go1.26"]
    block = "module x\n\ngodebug (\n\tdefault=go1.26\n\twinsymlink=0\n)\n"
    assert build.godebug_lines(block) == ["godebug default=go1.26", "godebug winsymlink=0"]


def test_wrapper_gomod_requires_the_module_and_replaces_staging() -> None:
    text = build.wrapper_gomod(
        "example.local/w",
        "k8s.io/kubernetes",
        "v1.37.2",
        [("k8s.io/api", "v0.37.2")],
        ["godebug default=go1.26"],
    )
    assert "module example.local/w\n" in text
    assert "require k8s.io/kubernetes v1.37.2\n" in text
    assert "replace k8s.io/api => k8s.io/api v0.37.2\n" in text
    assert "godebug default=go1.26\n" in text


def test_cache_dir_is_keyed_by_every_pinned_version_it_builds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    versions = build.load_versions()
    base = build.cache_dir(versions)
    assert base.is_relative_to(tmp_path)
    for key in build.BUILD_KEYS:
        bumped = {**versions, key: versions[key] + "-next"}
        assert build.cache_dir(bumped) != base, key
    # Traefik and Istio's CRDs have caches of their own: a new one does not rebuild Kubernetes.
    assert build.cache_dir({**versions, "TRAEFIK_VERSION": "v9"}) == base
    assert build.cache_dir({**versions, "ISTIO_API_VERSION": "v9"}) == base
    assert istio.cache_dir({**versions, "ISTIO_API_VERSION": "v9"}) != istio.cache_dir(versions)


def test_versions_file_pins_every_component() -> None:
    versions = build.load_versions()
    assert set(versions) == {
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "HELM_VERSION",
        "KUBECONFORM_VERSION",
        "GATEWAY_API_VERSION",
        "PROMETHEUS_OPERATOR_VERSION",
        "TRAEFIK_VERSION",
        "ISTIO_API_VERSION",
    }
    assert all(v.startswith("v") for v in versions.values())


def test_an_empty_cache_dir_is_not_mistaken_for_a_build(tmp_path: Path) -> None:
    assert not build.is_built(tmp_path)
    (tmp_path / "bin").mkdir()
    for b in build.BINARIES[:-1]:
        (tmp_path / "bin" / b).touch()
    (tmp_path / "manifest.json").write_text("{}")
    assert not build.is_built(tmp_path)
    (tmp_path / "bin" / build.BINARIES[-1]).touch()
    assert build.is_built(tmp_path)


def test_default_nodes_are_three_cpu_and_one_tainted_coral_node_with_the_device() -> None:
    made = [n.manifest() for n in nodes.default_nodes()]
    assert [m["metadata"]["name"] for m in made] == ["kwok-cpu-0", "kwok-cpu-1", "kwok-cpu-2", "kwok-coral-0"]
    assert all(m["metadata"]["annotations"][nodes.KWOK_ANNOTATION] == "fake" for m in made)
    coral = made[-1]
    assert coral["metadata"]["labels"][nodes.CORAL_LABEL] == nodes.CORAL_LABEL_VALUE
    assert coral["spec"]["taints"] == [
        {"key": nodes.CORAL_TAINT_KEY, "value": nodes.CORAL_LABEL_VALUE, "effect": "NoSchedule"}
    ]
    assert coral["status"]["capacity"][nodes.CORAL_RESOURCE] == "1"
    assert coral["status"]["allocatable"][nodes.CORAL_RESOURCE] == "1"
    assert all(nodes.CORAL_RESOURCE not in m["status"]["capacity"] for m in made[:-1])


def test_pki_issues_certificates_signed_by_the_ca_with_the_right_names(tmp_path: Path) -> None:
    keys = pki.generate(tmp_path, "10.96.0.1")
    ca = x509.load_pem_x509_certificate(keys.ca.read_bytes())
    serving = x509.load_pem_x509_certificate(keys.cert("apiserver").read_bytes())
    serving.verify_directly_issued_by(ca)
    sans = serving.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "10.96.0.1",
        NODE_IP,  # pods reach the API server at the real node's address
    }
    admin = x509.load_pem_x509_certificate(keys.cert("admin").read_bytes())
    admin.verify_directly_issued_by(ca)
    orgs = admin.subject.get_attributes_for_oid(x509.oid.NameOID.ORGANIZATION_NAME)
    assert [o.value for o in orgs] == ["system:masters"]
    assert isinstance(admin.public_key(), ec.EllipticCurvePublicKey)
    assert (tmp_path / "service-account.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert oct(keys.key("admin").stat().st_mode & 0o777) == "0o600"


def test_kubeconfig_points_at_server_with_client_certificate(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    write_kubeconfig(path, "https://127.0.0.1:6443", tmp_path / "ca", tmp_path / "c", tmp_path / "k", "admin")
    kc = yaml.safe_load(path.read_text())
    assert kc["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:6443"
    assert kc["users"][0]["user"]["client-certificate"] == str(tmp_path / "c")
    assert kc["contexts"][0]["context"] == {"cluster": "modelship-dev", "user": "admin"}


def test_a_pod_network_is_held_by_one_cluster_at_a_time_across_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes, "CLAIMS_DIR", tmp_path)
    monkeypatch.setattr(nodes, "_claims", {})  # this process's clusters hold networks of their own
    first = nodes.claim_pod_network([130, 131])
    second = nodes.claim_pod_network([130, 131])
    assert {first, second} == {130, 131}
    with pytest.raises(RuntimeError, match="every local pod network is held"):
        nodes.claim_pod_network([130, 131])
    # Another process (another test session, `make demo`) cannot take a held network.
    probe = (
        "import fcntl, sys; f = open(sys.argv[1], 'a')\n"
        "try: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError: sys.exit(3)\n"
    )
    held = subprocess.run([sys.executable, "-c", probe, str(tmp_path / f"{first}.lock")], check=False)
    assert held.returncode == 3
    nodes.release_pod_network(first)
    free = subprocess.run([sys.executable, "-c", probe, str(tmp_path / f"{first}.lock")], check=False)
    assert free.returncode == 0
    assert nodes.claim_pod_network([130, 131]) == first
    for network in (130, 131):
        nodes.release_pod_network(network)


def test_default_nodes_share_one_claimed_network_that_the_cluster_releases(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nodes, "CLAIMS_DIR", tmp_path)
    monkeypatch.setattr(nodes, "_claims", {})  # this process's clusters hold networks of their own
    made = nodes.default_nodes()
    networks = {nodes.network_of(n) for n in made}
    assert len(networks) == 1
    (network,) = networks
    assert network in nodes.POD_NETWORKS and network in nodes._claims
    state = tmp_path / "state"
    state.mkdir()
    cluster = LocalCluster(
        kubeconfig=state / "kubeconfig", bin_dir=tmp_path, state_dir=state, fake_nodes=made
    )
    cluster.stop()  # nothing was started: stopping only releases what the cluster holds
    assert network not in nodes._claims


def test_restarting_an_unknown_component_is_refused_naming_the_known_ones(tmp_path: Path) -> None:
    cluster = LocalCluster(
        kubeconfig=tmp_path / "kubeconfig", bin_dir=tmp_path, state_dir=tmp_path, fake_nodes=[]
    )
    with pytest.raises(ValueError, match="unknown component 'kubelet'; known: etcd, kube-apiserver, "):
        cluster.restart("kubelet")  # no real node
    with pytest.raises(ValueError, match="unknown component 'prometheus'"):
        cluster.stop_component("prometheus")
