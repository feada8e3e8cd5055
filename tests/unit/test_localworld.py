"""The local world's pure parts: address mapping, KWOK stage adjustment, image catalogue."""

from __future__ import annotations

import hashlib
import json
import re
import textwrap
from pathlib import Path

import pytest
import yaml

from devcluster import nodes, stages
from localworld import addresses, demomodels, discovery, load, prometheus, router
from localworld.catalogue import Catalogue, UnknownImage, add_image, sha256_file

pytestmark = pytest.mark.unit


def test_pod_ips_map_onto_loopback_by_replacing_the_first_octet() -> None:
    assert addresses.loopback("10.200.3.17") == "127.200.3.17"
    assert addresses.loopback("192.168.0.1") == "127.168.0.1"


def test_prometheus_address_rewrite_agrees_with_loopback() -> None:
    # Prometheus uses RE2 with ${1} references; Python's re accepts the same regex.
    replacement = addresses.ADDRESS_REPLACEMENT.replace("${1}", r"\1").replace("${2}", r"\2")
    rewritten = re.sub(f"^{addresses.ADDRESS_REGEX}$", replacement, "10.201.2.9:8080")
    assert rewritten == f"{addresses.loopback('10.201.2.9')}:8080"


def test_default_nodes_get_distinct_pod_cidrs_in_one_network() -> None:
    made = [n.manifest() for n in nodes.default_nodes(network=200)]
    assert [m["spec"]["podCIDR"] for m in made] == [
        "10.200.0.0/24",
        "10.200.1.0/24",
        "10.200.2.0/24",
        "10.200.100.0/24",
    ]
    assert all(m["spec"]["podCIDRs"] == [m["spec"]["podCIDR"]] for m in made)
    assert nodes.cpu_node(0).manifest()["spec"] == {"taints": []}  # no network: KWOK's own --cidr


def test_pod_ready_stage_skips_pods_the_runner_claimed() -> None:
    stage = {
        "kind": "Stage",
        "spec": {"selector": {"matchExpressions": [{"key": ".a", "operator": "Exists"}]}},
    }
    changed = stages.unclaimed_only(stage)
    assert changed["spec"]["selector"]["matchExpressions"] == [
        {"key": ".a", "operator": "Exists"},
        {"key": f'.metadata.annotations["{stages.RUNNER_ANNOTATION}"]', "operator": "DoesNotExist"},
    ]
    assert stage["spec"]["selector"]["matchExpressions"] == [{"key": ".a", "operator": "Exists"}]


def test_stage_files_are_copied_and_only_pod_ready_changes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    selector = {"selector": {"matchExpressions": []}}
    (src / "pod-ready.yaml").write_text(yaml.safe_dump({"spec": selector}))
    (src / "pod-delete.yaml").write_text("spec: {x: 1}\n")
    out = stages.write_stage_files(src, tmp_path / "out")
    assert [p.name for p in out] == ["pod-delete.yaml", "pod-ready.yaml"]
    assert (tmp_path / "out" / "pod-delete.yaml").read_text() == "spec: {x: 1}\n"
    ready = yaml.safe_load((tmp_path / "out" / "pod-ready.yaml").read_text())
    assert ready["spec"]["selector"]["matchExpressions"][0]["operator"] == "DoesNotExist"


def test_an_image_digest_is_the_sha256_of_its_manifest_which_names_every_file(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.joblib").write_bytes(b"weights")
    (bundle / "schema.json").write_text("{}")
    image = add_image(tmp_path / "world", "m", bundle, "model.joblib")
    body = (tmp_path / "world" / "images" / f"{image.digest}.json").read_bytes()
    assert hashlib.sha256(body).hexdigest() == image.digest
    assert json.loads(body)["files"] == {
        "/models/model.joblib": hashlib.sha256(b"weights").hexdigest(),
        "/models/schema.json": sha256_file(bundle / "schema.json"),
    }
    assert image.model_sha256 == hashlib.sha256(b"weights").hexdigest()
    assert image.host_path("/models/model.joblib") == bundle / "model.joblib"
    catalogue = Catalogue(tmp_path / "world")
    assert catalogue.resolve(f"registry.example/any/name@sha256:{image.digest}") == image
    assert catalogue.by_name("m") == image
    with pytest.raises(UnknownImage):
        catalogue.resolve("registry.example/any/name:latest")


def test_a_manifest_changed_after_cataloguing_is_refused(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.joblib").write_bytes(b"weights")
    image = add_image(tmp_path / "world", "m", bundle, "model.joblib")
    manifest = tmp_path / "world" / "images" / f"{image.digest}.json"
    manifest.write_text(manifest.read_text().replace("model.joblib", "other.joblib"))
    with pytest.raises(ValueError, match="does not match its digest"):
        Catalogue(tmp_path / "world").images()


REPO = Path(__file__).resolve().parents[2]


def test_docs_scrape_config_is_the_one_the_local_world_runs() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    section = doc[doc.index("## Scrape config") :]
    block = section[
        section.index("```yaml") + len("```yaml") : section.index("```\n", section.index("```yaml") + 7)
    ]
    assert yaml.safe_load(block) == [prometheus.recommended_job("15s")]


def test_chart_pod_monitor_relabels_like_the_recommended_scrape_config() -> None:
    template = (REPO / "charts" / "modelship" / "templates" / "modelpodmonitor.yaml").read_text()
    relabelings = textwrap.dedent(template[template.index("relabelings:") :].split("{{-")[0])
    chart = yaml.safe_load(relabelings)["relabelings"]
    as_prometheus = [{"source_labels": r["sourceLabels"], "target_label": r["targetLabel"]} for r in chart]
    assert as_prometheus == prometheus.RECOMMENDED_RELABELINGS
    assert "port: http" in template and "key: modelship.io/model, operator: Exists" in template


def test_discovery_describes_pods_like_kubernetes_sd_role_pod() -> None:
    pod = {
        "metadata": {
            "name": "risk-1",
            "namespace": "ns",
            "uid": "u1",
            "labels": {"modelship.io/revision": "risk-abc", "app": "risk"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "risk-abc", "controller": True}],
        },
        "spec": {
            "nodeName": "kwok-cpu-0",
            "containers": [
                {"name": "server", "image": "img", "ports": [{"name": "http", "containerPort": 8080}]}
            ],
        },
        "status": {
            "podIP": "10.200.0.4",
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    }
    (group,) = discovery.target_groups(pod)
    assert group["targets"] == ["10.200.0.4:8080"]
    labels = group["labels"]
    assert labels["__meta_kubernetes_pod_label_modelship_io_revision"] == "risk-abc"
    assert labels["__meta_kubernetes_pod_labelpresent_modelship_io_revision"] == "true"
    assert labels["__meta_kubernetes_pod_container_port_name"] == "http"
    assert labels["__meta_kubernetes_pod_container_port_number"] == "8080"
    assert labels["__meta_kubernetes_pod_ready"] == "true"
    assert labels["__meta_kubernetes_pod_controller_kind"] == "ReplicaSet"
    assert labels["__meta_kubernetes_namespace"] == "ns"
    assert discovery.target_groups({**pod, "status": {"phase": "Pending"}}) == []


def test_local_prometheus_config_uses_http_discovery_and_loopback_addresses() -> None:
    config = prometheus.local_config("http://127.0.0.1:1/", "2s")
    (job,) = config["scrape_configs"]
    assert "kubernetes_sd_configs" not in job  # Debian's build refuses it
    assert job["http_sd_configs"] == [{"url": "http://127.0.0.1:1/", "refresh_interval": "1s"}]
    assert job["relabel_configs"][:-1] == prometheus.recommended_job("2s")["relabel_configs"]
    assert job["relabel_configs"][-1] == prometheus.TO_LOOPBACK
    assert config["global"]["scrape_interval"] == "2s"


def test_route_backends_are_the_first_rules_service_refs_with_default_weight_1() -> None:
    route = {
        "spec": {
            "rules": [
                {"backendRefs": [{"name": "s", "weight": 80}, {"name": "c"}, {"name": "x", "kind": "Other"}]},
                {"backendRefs": [{"name": "ignored"}]},
            ]
        }
    }
    assert router.backends_of(route, "svc") == [router.Backend("s", 80), router.Backend("c", 1)]
    assert router.backends_of(None, "svc") == [router.Backend("svc", 1)]


def test_ready_endpoints_are_the_services_ready_or_unknown_addresses_on_its_http_port() -> None:
    def slice_(
        service: str, ports: list[dict[str, object]], endpoints: list[dict[str, object]]
    ) -> dict[str, object]:
        return {
            "metadata": {"labels": {router.SERVICE_NAME_LABEL: service}},
            "ports": ports,
            "endpoints": endpoints,
        }

    slices = [
        slice_(
            "a",
            [{"name": "http", "port": 8080}, {"name": "grpc", "port": 9000}],
            [
                {"addresses": ["10.1.0.2"], "conditions": {"ready": True}},
                {"addresses": ["10.1.0.3"], "conditions": {"ready": False}},
                {"addresses": ["10.1.0.4"]},
            ],
        ),
        slice_("b", [{"port": 8080}], [{"addresses": ["10.1.0.9"], "conditions": {"ready": True}}]),
    ]
    assert router.ready_endpoints(slices, "a") == [("10.1.0.2", 8080), ("10.1.0.4", 8080)]
    assert router.ready_endpoints(slices, "c") == []


def test_load_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        load.steady("http://10.0.0.1:80/", b"", rate=1, duration=1)


def test_demo_models_v2_beats_v1_and_v3_inaccurate_is_wrong_on_the_holdout(tmp_path: Path) -> None:
    import joblib

    catalogue = demomodels.build_demo(tmp_path)
    x, y = demomodels.holdout()
    accuracy = {}
    for version in demomodels.VERSIONS:
        image = catalogue.by_name(version)
        model = joblib.load(image.host_path(image.env["MODEL_PATH"]))
        accuracy[version] = float((model.predict(x) == y).mean())
    assert accuracy["v2"] > accuracy["v1"] + 0.01 > 0.85
    assert accuracy["v3-inaccurate"] < 0.4  # no better than guessing among three classes
    # The faulty images serve v2's very model; only their environment (and so their digest) differs.
    assert accuracy["v3-bad-errors"] == accuracy["v3-slow"] == accuracy["v2"]
    assert len({catalogue.by_name(v).digest for v in demomodels.VERSIONS}) == 5


def test_faulty_demo_images_set_the_fault_knobs_the_server_validates(tmp_path: Path) -> None:
    from modelserver.config import from_env

    catalogue = demomodels.build_demo(tmp_path)
    base = {"MODEL_ALLOW_UNVERIFIED": "true"}
    errors = from_env(base | catalogue.by_name("v3-bad-errors").env).faults
    slow = from_env(base | catalogue.by_name("v3-slow").env).faults
    assert (errors.error_ratio, errors.latency_s) == (0.3, 0.0)
    assert (slow.error_ratio, slow.latency_s) == (0.0, 0.5)
    assert not from_env(base | catalogue.by_name("v2").env).faults.on


def test_feedback_affinity_remembers_the_endpoint_per_request_id_forgetting_the_oldest() -> None:
    affinity = router.Affinity(capacity=2)
    affinity.remember("r1", "risk-stable", ("10.1.0.1", 8080))
    affinity.remember("r2", "risk-canary", ("10.1.0.2", 8080))
    assert affinity.lookup("r1") == ("risk-stable", ("10.1.0.1", 8080))  # now the most recent
    affinity.remember("r3", "risk-canary", ("10.1.0.3", 8080))
    assert affinity.lookup("r2") is None and len(affinity) == 2
    assert affinity.lookup("r1") is not None and affinity.lookup("r3") is not None


def test_only_post_feedback_naming_a_request_id_is_routed_by_affinity() -> None:
    body = json.dumps({"request_id": "abc", "labels": ["x"]}).encode()
    assert router.feedback_request_id("POST", "/feedback", body) == "abc"
    assert router.feedback_request_id("POST", "/feedback?x=1", body) == "abc"
    assert router.feedback_request_id("POST", "/predict", body) is None
    assert router.feedback_request_id("GET", "/feedback", body) is None
    assert router.feedback_request_id("POST", "/feedback", b"not json") is None
    assert router.feedback_request_id("POST", "/feedback", b'{"request_id": 7}') is None


def test_an_address_is_taken_while_another_pods_process_lives_there() -> None:
    import subprocess
    import sys

    from localworld.podrunner import Running, address_taken

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        old = Running("ns", "old", "c", "img", "127.130.0.1", 8080, proc, "2026-01-01T00:00:00Z")
        holders = [("old-uid", old)]
        assert address_taken("127.130.0.1", 8080, "new-uid", holders)  # KWOK reused the IP
        assert not address_taken("127.130.0.1", 8080, "old-uid", holders)  # its own address
        assert not address_taken("127.130.0.1", 9090, "new-uid", holders)
        assert not address_taken("127.130.0.2", 8080, "new-uid", holders)
    finally:
        proc.kill()
        proc.wait()
    assert not address_taken("127.130.0.1", 8080, "new-uid", holders)  # exited: free again
