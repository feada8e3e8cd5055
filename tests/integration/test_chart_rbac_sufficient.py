"""The chart's RBAC is sufficient, not just small: the operator, running as the chart's
ServiceAccount (a kubeconfig holding only that account's token), deploys the basic example."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage

from .mdhelpers import kube, operator_in
from .test_chart import chart_crds, install, operator_account, release
from .test_operator import deploy_basic

__all__ = ["chart_crds", "kube", "release"]  # fixtures used by this module
pytestmark = pytest.mark.integration


def service_account_kubeconfig(cluster: ExistingCluster, namespace: str, sa: str, path: Path) -> Path:
    """The cluster's kubeconfig with its user replaced by a bound token of `sa`."""
    token = cluster.kubectl("create", "token", sa, "-n", namespace, "--duration=1h").strip()
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    config["users"] = [{"name": sa, "user": {"token": token}}]
    context["context"]["user"] = sa
    config["contexts"] = [context]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
def test_operator_with_the_charts_service_account_deploys_the_basic_example(
    cluster: ExistingCluster,
    kube: Storage,
    namespace: str,
    release: str,
    chart_crds: None,
    tmp_path: Path,
    mode: str,
) -> None:
    # The in-cluster operator pod is not what runs here: scale it away so that only the
    # process below, with the same identity, reconciles.
    values = ["--set", f"namespaced={str(mode == 'namespaced').lower()}", "--set", "replicaCount=0"]
    install(cluster, release, namespace, *values)
    kubeconfig = service_account_kubeconfig(
        cluster, namespace, operator_account(release), tmp_path / "sa.kubeconfig"
    )
    as_operator = ExistingCluster(kubeconfig=kubeconfig, bin_dir=cluster.bin_dir)
    forbidden = as_operator.kubectl("get", "secrets", "-n", namespace, check=False)
    assert forbidden == "", "the chart's ServiceAccount can read Secrets"

    operator = operator_in(as_operator, namespace, tmp_path / "operator.log").start()
    try:
        obj, revision = deploy_basic(kube, namespace)
        assert obj["status"]["stableRevision"] == revision
    finally:
        operator.stop()
    log = (tmp_path / "operator.log").read_text()
    # Each record but its time: a timestamp's milliseconds may read 403.
    records = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    texts = [json.dumps({k: v for k, v in record.items() if k != "time"}) for record in records]
    refused = [t for t in texts if "Forbidden" in t or re.search(r"\b403\b", t)]
    assert records and not refused, refused or log[-3000:]


def test_kubeconfig_for_the_service_account_is_really_that_identity(
    cluster: ExistingCluster, namespace: str, release: str, chart_crds: None, tmp_path: Path
) -> None:
    install(cluster, release, namespace, "--set", "namespaced=true")
    kubeconfig = service_account_kubeconfig(
        cluster, namespace, operator_account(release), tmp_path / "sa.kubeconfig"
    )
    whoami = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"],
        env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert whoami == f"system:serviceaccount:{namespace}:{release}-modelship"
