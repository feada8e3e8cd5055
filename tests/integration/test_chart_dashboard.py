"""The chart's dashboard (`dashboard.enabled`), rendered with helm: what it installs, that the API
server accepts it, its rights read-only and with actions, and the values it refuses. The dashboard
running with these rights: tests/integration/test_dashboard_incluster.py."""

from __future__ import annotations

from typing import Any

import pytest

from devcluster.cluster import ExistingCluster

from .test_chart import CHART, chart_crds, dry_run_server, helm, render

__all__ = ["chart_crds"]  # a fixture used by this module
pytestmark = pytest.mark.integration

ON = ["--set", "dashboard.enabled=true", "--set", "dashboard.publicHosts={modelship.example.com}"]
ACTIONS = [
    "--set",
    "dashboard.actions.enabled=true",
    "--set",
    "dashboard.identity.userHeader=X-Forwarded-User",
    "--set",
    "dashboard.identity.groupsHeader=X-Forwarded-Groups",
]


def dashboard_docs(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The dashboard's objects by kind/name."""
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in docs
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "dashboard"
    }


def rules_of(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]


def test_off_by_default(cluster: ExistingCluster) -> None:
    assert dashboard_docs(render(cluster, "ops")) == {}


def test_helm_lint_is_clean_with_the_dashboard(cluster: ExistingCluster) -> None:
    done = helm(cluster, "lint", "--strict", str(CHART), *ON, *ACTIONS, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


@pytest.mark.parametrize("values", [ON, ON + ACTIONS, [*ON, "--set", "namespaced=true"]])
def test_the_rendered_dashboard_is_accepted_by_the_api_server(
    cluster: ExistingCluster, namespace: str, chart_crds: None, values: list[str]
) -> None:
    docs = render(cluster, namespace, *values)
    assert dashboard_docs(docs)
    dry_run_server(cluster, namespace, docs)


def test_the_deployment_runs_the_operators_image_in_cluster_mode_non_root_read_only_with_probes(
    cluster: ExistingCluster,
) -> None:
    docs = render(cluster, "ops", *ON, *ACTIONS)
    mine = dashboard_docs(docs)
    deployment = mine["Deployment/ms-modelship-dashboard"]
    operator = next(d for d in docs if d["kind"] == "Deployment" and d not in mine.values())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == operator["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["args"] == [
        "dashboard",
        "--in-cluster",
        "--listen=0.0.0.0:8080",
        "--public-host=modelship.example.com",
        "--user-header=X-Forwarded-User",
        "--groups-header=X-Forwarded-Groups",
        "--actions",
    ]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == "ms-modelship-dashboard"
    # Neither the operator's Deployment nor its metrics Service selects the dashboard's pods.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    metrics = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    for selector in (operator["spec"]["selector"]["matchLabels"], metrics["spec"]["selector"]):
        assert not all(pod_labels.get(k) == v for k, v in selector.items()), selector
    service = mine["Service/ms-modelship-dashboard"]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_the_network_policy_lets_only_the_proxy_in(cluster: ExistingCluster) -> None:
    policy = dashboard_docs(render(cluster, "ops", *ON))["NetworkPolicy/ms-modelship-dashboard"]
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "oauth2-proxy"}}}]
    nobody = ["--set-json", "dashboard.networkPolicy.from=[]"]  # an empty list would let everyone in
    everyone = helm(cluster, "template", "ms", str(CHART), *ON, *nobody, check=False)
    assert everyone.returncode != 0 and "/dashboard/networkPolicy/from" in everyone.stderr


def test_read_only_it_may_only_read_and_with_actions_also_impersonate_and_review(
    cluster: ExistingCluster,
) -> None:
    read = [
        {"apiGroups": ["modelship.io"], "resources": ["modeldeployments"], "verbs": ["get", "list", "watch"]},
        {"apiGroups": [""], "resources": ["events", "pods"], "verbs": ["list"]},
    ]
    assert rules_of(list(dashboard_docs(render(cluster, "ops", *ON)).values())) == read
    acting = rules_of(list(dashboard_docs(render(cluster, "ops", *ON, *ACTIONS)).values()))
    assert acting == [
        *read,
        {"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]},
        {"apiGroups": ["authorization.k8s.io"], "resources": ["subjectaccessreviews"], "verbs": ["create"]},
    ]
    namespaced = dashboard_docs(render(cluster, "ops", *ON, "--set", "namespaced=true"))
    assert {k.split("/")[0] for k in namespaced} == {
        "ServiceAccount", "Deployment", "Service", "NetworkPolicy", "Role", "RoleBinding"}  # fmt: skip


@pytest.mark.parametrize(
    ("values", "said"),
    [
        (["--set", "dashboard.enabled=true"], "dashboard.publicHosts"),
        ([*ON, "--set", "dashboard.actions.enabled=true"], "needs dashboard.identity.userHeader"),
        ([*ON, *ACTIONS, "--set", "namespaced=true"], "needs cluster-scoped rights"),
        ([*ON, "--set", "dashboard.publicHosts={https://x.example}"], "/dashboard/publicHosts/0"),
        ([*ON, "--set", "dashboard.identity.userHeader=X User"], "/dashboard/identity/userHeader"),
        ([*ON, "--set", "dashboard.replicas=2"], "additional properties 'replicas' not allowed"),
    ],
)
def test_values_that_cannot_work_are_refused_naming_the_value(
    cluster: ExistingCluster, values: list[str], said: str
) -> None:
    done = helm(cluster, "template", "ms", str(CHART), *values, check=False)
    assert done.returncode != 0 and said in done.stderr, done.stderr


def test_the_install_notes_say_where_the_dashboard_is_and_whether_it_acts(
    cluster: ExistingCluster, namespace: str, chart_crds: None
) -> None:
    for values, mode in ((ON, "read-only"), ([*ON, *ACTIONS], "actions as the logged-in user")):
        args = ["install", "ms", str(CHART), "--namespace", namespace, "--skip-crds", "--dry-run=server"]
        done = helm(cluster, *args, *values)
        assert f"The dashboard ({mode}): https://modelship.example.com" in done.stdout, done.stdout
        assert "Service ms-modelship-dashboard:80" in done.stdout
