"""The chart's `shards`: one operator Deployment per shard, each with its selector and its own peering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster

from .test_chart import (
    CHART,
    can,
    chart_crds,
    dry_run_server,
    helm,
    install,
    operator_account,
    release,
    render,
    sa_user,
)

__all__ = ["chart_crds", "release"]  # fixtures used by this module
pytestmark = pytest.mark.integration

SHARDS = """\
ha: {enabled: true}
shards:
  - {name: a, selector: "modelship.io/shard=a"}
  - {name: b, selector: "modelship.io/shard in (b,c)"}
"""


@pytest.fixture
def shards(tmp_path: Path) -> list[str]:
    values = tmp_path / "shards.yaml"
    values.write_text(SHARDS)
    return ["-f", str(values)]


def of_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def args(deployment: dict[str, Any]) -> list[str]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["args"])


def namespace_rules(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (role,) = [d for d in of_kind(docs, "ClusterRole") if d["metadata"]["name"] == "ms-modelship"]
    return [r for r in role["rules"] if "namespaces" in r["resources"]]


def test_each_shard_gets_its_own_deployment_selector_and_peering(
    cluster: ExistingCluster, namespace: str, chart_crds: None, shards: list[str]
) -> None:
    docs = render(cluster, namespace, *shards)
    deployments = {d["metadata"]["name"]: d for d in of_kind(docs, "Deployment")}
    assert sorted(deployments) == ["ms-modelship-a", "ms-modelship-b"]
    selectors = {}
    for name, deployment in deployments.items():
        shard = name[-1]
        assert deployment["spec"]["replicas"] == 2  # ha.replicas, per shard
        labels = deployment["spec"]["selector"]["matchLabels"]
        assert labels["modelship.io/operator-shard"] == shard
        assert deployment["spec"]["template"]["metadata"]["labels"] == labels
        selectors[shard] = [a for a in args(deployment) if a.startswith("--shard-selector=")]
        # Its own peering object: shard a's replicas elect their active one apart from shard b's.
        assert f"--peering={name}" in args(deployment)
    assert selectors == {
        "a": ["--shard-selector=modelship.io/shard=a"],
        "b": ["--shard-selector=modelship.io/shard in (b,c)"],
    }
    peerings = sorted(d["metadata"]["name"] for d in of_kind(docs, "ClusterKopfPeering"))
    assert peerings == sorted(deployments)
    budgets = {
        d["metadata"]["name"]: d["spec"]["selector"]["matchLabels"]
        for d in of_kind(docs, "PodDisruptionBudget")
    }
    assert {n: b["modelship.io/operator-shard"] for n, b in budgets.items()} == {
        "ms-modelship-a": "a",
        "ms-modelship-b": "b",
    }
    assert namespace_rules(docs) == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["list", "watch"]}
    ]
    dry_run_server(cluster, namespace, docs)
    lint = helm(cluster, "lint", "--strict", str(CHART), *shards, check=False)
    assert lint.returncode == 0 and "[WARNING]" not in lint.stdout, lint.stdout + lint.stderr


def test_without_shards_one_operator_watches_no_namespaces(cluster: ExistingCluster, namespace: str) -> None:
    docs = render(cluster, namespace, "--set", "ha.enabled=true")
    (deployment,) = of_kind(docs, "Deployment")
    assert deployment["metadata"]["name"] == "ms-modelship"
    assert not [a for a in args(deployment) if a.startswith("--shard-selector")]
    assert "modelship.io/operator-shard" not in deployment["spec"]["selector"]["matchLabels"]
    assert [d["metadata"]["name"] for d in of_kind(docs, "ClusterKopfPeering")] == ["ms-modelship"]
    assert namespace_rules(docs) == []


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["--set", "namespaced=true"], "shards: sharding selects namespaces by their labels"),
        (["--set", "shards[1].name=a"], 'shards: the name "a" is given twice'),
        (["--set", "shards[0].name=Shard_A"], "/shards/0/name"),
        (["--set", "shards[0].selector="], "/shards/0/selector"),
    ],
)
def test_shards_refuse_what_cannot_work(
    cluster: ExistingCluster, shards: list[str], values: list[str], message: str
) -> None:
    done = helm(cluster, "template", "ms", str(CHART), *shards, *values, check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr


def test_a_sharded_install_may_list_and_watch_namespaces(
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    namespace: str,
    release: str,
    chart_crds: None,
    shards: list[str],
) -> None:
    install(cluster, release, namespace, *shards)
    user = sa_user(namespace, operator_account(release))
    assert can(api_client, user, "watch", "namespaces")
    assert can(api_client, user, "list", "namespaces")
    assert not can(api_client, user, "patch", "namespaces")
