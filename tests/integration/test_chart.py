"""The Helm chart: lint, render, schema, server-side validation, install, and least-privilege RBAC."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import ExistingCluster
from modelship.core import manifests

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "modelship"
PEERING_CRDS = CHART / "charts" / "kopf-peering" / "crds"  # a subchart enabled by ha.enabled

VARIANTS = {
    "default": [],
    "namespaced": ["--set", "namespaced=true"],
    "ha": ["--set", "ha.enabled=true"],
    "everything": [
        "--set",
        "namespaced=true",
        "--set",
        "ha.enabled=true",
        "--set",
        "prometheus.authSecret=prometheus-auth",
        "--set",
        "metrics.serviceMonitor.enabled=true",
        "--set",
        "modelPodMonitor.enabled=true",
    ],
}


def helm(cluster: ExistingCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cluster.bin_dir / "helm"), *args], env=cluster.env, capture_output=True, text=True, check=check
    )


def install(cluster: ExistingCluster, release: str, namespace: str, *values: str) -> None:
    """`helm install` the chart (the module's `chart_crds` fixture installs the CRDs)."""
    helm(cluster, "install", release, str(CHART), "--namespace", namespace, "--skip-crds", *values)


def operator_account(release: str) -> str:
    """The ServiceAccount the chart makes for a release (its full name)."""
    return f"{release}-modelship"


def render(cluster: ExistingCluster, namespace: str, *values: str) -> list[dict[str, Any]]:
    out = helm(cluster, "template", "ms", str(CHART), "--namespace", namespace, *values).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def sa_user(namespace: str, sa: str) -> tuple[str, list[str]]:
    return (
        f"system:serviceaccount:{namespace}:{sa}",
        ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
    )


def can(
    api_client: client.ApiClient,
    user: tuple[str, list[str]],
    verb: str,
    resource: str,
    group: str = "",
    namespace: str | None = None,
    subresource: str | None = None,
) -> bool:
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=user[0],
            groups=user[1],
            resource_attributes=client.V1ResourceAttributes(
                verb=verb, resource=resource, group=group, namespace=namespace, subresource=subresource
            ),
        )
    )
    result = client.AuthorizationV1Api(api_client).create_subject_access_review(review)
    return bool(result.status.allowed)


@pytest.fixture(scope="module")
def chart_crds(cluster: ExistingCluster) -> None:
    """The chart's CRDs (kopf's peering ones included) plus the Prometheus Operator's monitor CRDs,
    so every kind renders valid."""
    monitors = cluster.bin_dir.parent / "prometheus-operator"
    for path in (CHART / "crds", PEERING_CRDS, monitors):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


@pytest.fixture
def release(cluster: ExistingCluster, namespace: str) -> Iterator[str]:
    """A unique release name (its objects, ServiceAccount included, are `<release>-modelship`)."""
    name = f"ms-{uuid.uuid4().hex[:6]}"
    yield name
    helm(cluster, "uninstall", name, "--namespace", namespace, "--wait", check=False)


def dry_run_server(cluster: ExistingCluster, namespace: str, docs: list[dict[str, Any]]) -> None:
    """The real API server validates every object (schema, admission) and stores nothing."""
    done = subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "apply", "--dry-run=server", "-n", namespace, "-f", "-"],
        input="\n---\n".join(yaml.safe_dump(d) for d in docs),
        env=cluster.env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no warnings either


def test_helm_lint_is_clean(cluster: ExistingCluster) -> None:
    for values in VARIANTS.values():
        done = helm(cluster, "lint", "--strict", str(CHART), *values, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout, done.stdout


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_chart_is_accepted_by_the_api_server(
    cluster: ExistingCluster, namespace: str, chart_crds: None, variant: str
) -> None:
    values = list(VARIANTS[variant])
    if "namespaced=true" in values:
        values += ["--set", f"watchNamespaces={{{namespace}}}"]
    docs = render(cluster, namespace, *values)
    assert docs, "nothing rendered"
    # Server-side dry-run: the real API server validates every object against its own
    # schemas (built-in kinds, our CRD, Gateway API, monitors) and admission, with no write.
    dry_run_server(cluster, namespace, docs)


def test_values_schema_refuses_a_wrong_type_and_an_unknown_key(cluster: ExistingCluster) -> None:
    wrong_type = helm(cluster, "template", "ms", str(CHART), "--set", "metrics.port=http", check=False)
    assert wrong_type.returncode != 0
    assert "/metrics/port" in wrong_type.stderr and "want integer" in wrong_type.stderr
    unknown = helm(cluster, "template", "ms", str(CHART), "--set", "replicas=3", check=False)
    assert unknown.returncode != 0
    assert "additional properties 'replicas' not allowed" in unknown.stderr
    two_standalone = helm(cluster, "template", "ms", str(CHART), "--set", "replicaCount=2", check=False)
    assert two_standalone.returncode != 0 and "/replicaCount" in two_standalone.stderr


def test_chart_crd_is_the_generated_one() -> None:
    generated = REPO / "crds" / "modelship.io_modeldeployments.yaml"
    assert (CHART / "crds" / generated.name).read_text() == generated.read_text(), (
        "charts/modelship/crds/ drifted from crds/: run `make chart-crds`"
    )


def test_model_pod_monitor_scrapes_the_port_and_labels_the_operator_sets(cluster: ExistingCluster) -> None:
    docs = render(cluster, "default", "--set", "modelPodMonitor.enabled=true")
    (monitor,) = [d for d in docs if d["kind"] == "PodMonitor"]
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert endpoint["port"] == manifests.PORT_NAME
    relabel = {r["targetLabel"]: r["sourceLabels"][0] for r in endpoint["relabelings"]}
    as_meta = "__meta_kubernetes_pod_label_" + manifests.REVISION_LABEL.replace(".", "_").replace("/", "_")
    assert relabel["revision"] == as_meta
    expressions = monitor["spec"]["selector"]["matchExpressions"]
    assert expressions == [{"key": manifests.MODEL_LABEL, "operator": "Exists"}]


CREATE_SECRETS = {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}  # feedback keys


def test_rbac_has_no_wildcards_and_reads_no_secrets_unless_asked(cluster: ExistingCluster) -> None:
    for variant, values in VARIANTS.items():
        rules = [
            rule
            for d in render(cluster, "default", *values)
            if d["kind"] in ("ClusterRole", "Role")
            for rule in d["rules"]
        ]
        for rule in rules:
            for key in ("verbs", "resources", "apiGroups"):
                assert "*" not in rule[key], (variant, rule)
        secret_rules = [r for r in rules if "secrets" in r["resources"] and r != CREATE_SECRETS]
        assert CREATE_SECRETS in rules, variant
        if "prometheus.authSecret=prometheus-auth" in values:
            assert secret_rules == [
                {
                    "apiGroups": [""],
                    "resources": ["secrets"],
                    "resourceNames": ["prometheus-auth"],
                    "verbs": ["get"],
                }
            ]
        else:
            assert secret_rules == [], variant


NOTIFICATION_TARGETS = [
    {"name": "ops", "type": "slack", "urlFrom": {"secretKeyRef": {"name": "chat-hooks", "key": "slack"}}},
    {"name": "ci", "type": "webhook", "urlFrom": {"secretKeyRef": {"name": "chat-hooks", "key": "ci"}}},
]


def test_operator_wide_notifications_reach_the_operator_and_open_only_their_secrets(
    cluster: ExistingCluster, namespace: str, chart_crds: None
) -> None:
    docs = render(cluster, namespace, "--set-json", f"notifications={json.dumps(NOTIFICATION_TARGETS)}")
    dry_run_server(cluster, namespace, docs)
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    env = {e["name"]: e.get("value") for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert json.loads(env["MODELSHIP_NOTIFICATIONS"]) == NOTIFICATION_TARGETS
    (role,) = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"].endswith("-notifications")]
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["chat-hooks"], "verbs": ["get"]}
    ]
    refused = helm(
        cluster,
        "template",
        "ms",
        str(CHART),
        "--set-json",
        'notifications=[{"name": "x", "type": "email"}]',
        check=False,
    )
    assert refused.returncode != 0 and "/notifications/0" in refused.stderr


def test_install_schedules_the_operator_under_restricted_pod_security(
    cluster: ExistingCluster, api_client: client.ApiClient, namespace: str, release: str, chart_crds: None
) -> None:
    core = client.CoreV1Api(api_client)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    done = helm(
        cluster,
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--set",
        "namespaced=true",
        "--wait",
        "--timeout",
        "120s",
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "kubectl apply -f examples/basic.yaml" in done.stdout  # NOTES.txt says what to do next
    pods = core.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/instance={release}").items
    assert len(pods) == 1
    assert pods[0].spec.node_name, "the operator pod was not scheduled"
    assert any(c.type == "Ready" and c.status == "True" for c in pods[0].status.conditions)


def test_cluster_rbac_allows_what_the_operator_needs_and_nothing_more(
    cluster: ExistingCluster, api_client: client.ApiClient, namespace: str, release: str, chart_crds: None
) -> None:
    install(cluster, release, namespace, "--set", "ha.enabled=true")
    user = sa_user(namespace, operator_account(release))
    elsewhere = "some-other-namespace"
    allowed = [
        ("watch", "modeldeployments", "modelship.io", elsewhere, None),
        ("patch", "modeldeployments", "modelship.io", elsewhere, "status"),
        ("create", "deployments", "apps", elsewhere, None),
        ("delete", "deployments", "apps", elsewhere, None),
        ("patch", "services", "", elsewhere, None),
        ("patch", "httproutes", "gateway.networking.k8s.io", elsewhere, None),
        ("patch", "virtualservices", "networking.istio.io", elsewhere, None),  # the istio router
        ("create", "events", "events.k8s.io", elsewhere, None),
        ("patch", "events", "events.k8s.io", elsewhere, None),  # a repeat bumps its series
        ("create", "secrets", "", elsewhere, None),  # feedback keys, never read back
        ("patch", "clusterkopfpeerings", "kopf.dev", None, None),
        ("list", "nodes", "", None, None),  # free Coral devices (docs/coral.md)
        ("list", "pods", "", None, None),
        ("create", "jobs", "batch", elsewhere, None),  # job metrics, evaluation steps
        ("get", "jobs", "batch", elsewhere, None),
        ("delete", "jobs", "batch", elsewhere, None),
    ]
    for verb, resource, group, ns, sub in allowed:
        assert can(api_client, user, verb, resource, group, ns, sub), (verb, resource, ns, sub)
    denied = [
        ("get", "secrets", "", namespace, None),
        ("list", "secrets", "", None, None),
        ("delete", "namespaces", "", None, None),
        ("create", "clusterrolebindings", "rbac.authorization.k8s.io", None, None),
        ("patch", "roles", "rbac.authorization.k8s.io", namespace, None),
        ("create", "pods", "", namespace, None),
        ("get", "pods", "", namespace, "log"),
        ("patch", "nodes", "", None, None),
        ("delete", "modeldeployments", "modelship.io", namespace, None),
        ("delete", "virtualservices", "networking.istio.io", namespace, None),  # never deleted, only patched
    ]
    for verb, resource, group, ns, sub in denied:
        assert not can(api_client, user, verb, resource, group, ns, sub), (verb, resource, ns, sub)


def test_namespaced_rbac_has_no_cluster_scope(
    cluster: ExistingCluster, api_client: client.ApiClient, namespace: str, release: str, chart_crds: None
) -> None:
    install(cluster, release, namespace, "--set", "namespaced=true")
    user = sa_user(namespace, operator_account(release))
    assert can(api_client, user, "watch", "modeldeployments", "modelship.io", namespace)
    assert can(api_client, user, "patch", "deployments", "apps", namespace)
    assert not can(api_client, user, "watch", "modeldeployments", "modelship.io", None)
    assert not can(api_client, user, "watch", "modeldeployments", "modelship.io", "default")
    assert not can(api_client, user, "list", "namespaces", "", None)
    assert not can(api_client, user, "list", "nodes", "", None)
    rendered = render(cluster, namespace, "--set", "namespaced=true")
    assert not [d for d in rendered if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    assert [d["kind"] for d in rendered].count("Role") == 1
