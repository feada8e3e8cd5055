"""The local world's pure parts: address mapping, KWOK stage adjustment, image catalogue."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from devcluster import nodes
from localworld import demoimages, demomodels, discovery, load, prometheus

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


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


def test_local_prometheus_config_uses_http_discovery_and_the_recommended_relabelling() -> None:
    config = prometheus.local_config("http://127.0.0.1:1/", "2s")
    (job,) = config["scrape_configs"]
    assert "kubernetes_sd_configs" not in job  # Debian's build refuses it
    assert job["http_sd_configs"] == [{"url": "http://127.0.0.1:1/", "refresh_interval": "500ms"}]
    # Pods on the real node are scraped at their pod IPs: nothing is rewritten.
    assert job["relabel_configs"] == prometheus.recommended_job("2s")["relabel_configs"]
    assert config["global"]["scrape_interval"] == "2s"


def test_load_refuses_non_loopback_targets() -> None:
    with pytest.raises(ValueError, match="loopback"):
        load.steady("http://10.0.0.1:80/", b"", rate=1, duration=1)


def test_demo_models_v2_beats_v1_and_v3_inaccurate_is_wrong_on_the_holdout(tmp_path: Path) -> None:
    import joblib

    x, y = demomodels.holdout()
    accuracy = {}
    for version in demomodels.TRAINED:
        demomodels.bundle(version, tmp_path / version)
        model = joblib.load(tmp_path / version / "model.joblib")
        accuracy[version] = float((model.predict(x) == y).mean())
    assert accuracy["v2"] > accuracy["v1"] + 0.01 > 0.85
    assert accuracy["v3-inaccurate"] < 0.4  # no better than guessing among three classes
    # The shadow demo's candidate: as accurate as v1, yet another answer on about 10% of rows.
    assert abs(accuracy["v3-disagrees"] - accuracy["v1"]) < 0.02
    v1, disagrees = (joblib.load(tmp_path / v / "model.joblib").predict(x) for v in ("v1", "v3-disagrees"))
    assert 0.08 <= float((v1 != disagrees).mean()) <= 0.12
    # The faulty images carry v2's very bundle, v1-again v1's; only their environment differs.
    assert demomodels.FAULTY["v1-again"][0] == "v1"
    assert {base for name, (base, _) in demomodels.FAULTY.items() if name != "v1-again"} == {"v2"}


def test_faulty_demo_images_set_the_fault_knobs_the_server_validates() -> None:
    from modelserver.config import from_env

    base = {"MODEL_ALLOW_UNVERIFIED": "true", "MODEL_PATH": "/models/model.joblib"}
    errors = from_env(base | demoimages.fault_env("v3-bad-errors")).faults
    slow = from_env(base | demoimages.fault_env("v3-slow")).faults
    assert (errors.error_ratio, errors.latency_s) == (0.3, 0.0)
    assert (slow.error_ratio, slow.latency_s) == (0.0, 0.5)
    assert not from_env(base | demoimages.fault_env("v2")).faults.on
    assert not from_env(base | demoimages.fault_env("v1-again")).faults.on
