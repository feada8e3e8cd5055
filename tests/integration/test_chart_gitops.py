"""The chart as the ecosystem expects it (issue #17): a PodDisruptionBudget and kopf's peering CRDs
only in HA mode, a readiness probe on something meaningful, aggregated edit/view ClusterRoles for
people, `global` values (the chart as a subchart), a `helm test` hook, and the README's install
section run as written."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from devcluster.cluster import ExistingCluster
from devcluster.net import free_port
from localworld import docblocks

from .mdhelpers import crd_installed, kube, operator_in
from .test_chart import CHART, REPO, can, chart_crds, dry_run_server, helm, install, release, render

__all__ = ["chart_crds", "crd_installed", "kube", "release"]  # fixtures used by this module
pytestmark = pytest.mark.integration

README = REPO / "README.md"


def kinds(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(d["kind"], d["metadata"]["name"]) for d in docs]


def test_ha_brings_a_pdb_and_the_peering_crds_and_the_default_neither(
    cluster: ExistingCluster, namespace: str, chart_crds: None
) -> None:
    default = render(cluster, namespace, "--include-crds")
    assert not [d for d in default if d["kind"] == "PodDisruptionBudget"]
    crds = [d["metadata"]["name"] for d in default if d["kind"] == "CustomResourceDefinition"]
    assert crds == ["modeldeployments.modelship.io"]

    ha = render(cluster, namespace, "--include-crds", "--set", "ha.enabled=true")
    crds = sorted(d["metadata"]["name"] for d in ha if d["kind"] == "CustomResourceDefinition")
    assert crds == ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev", "modeldeployments.modelship.io"]
    (pdb,) = [d for d in ha if d["kind"] == "PodDisruptionBudget"]
    (deployment,) = [d for d in ha if d["kind"] == "Deployment"]
    assert pdb["spec"]["maxUnavailable"] == 1 and deployment["spec"]["replicas"] == 2
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    dry_run_server(cluster, namespace, [d for d in ha if d["kind"] != "CustomResourceDefinition"])


def test_readiness_probe_asks_readyz_on_the_metrics_port(cluster: ExistingCluster) -> None:
    (deployment,) = [d for d in render(cluster, "default") if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    assert "--metrics-port=8080" in container["args"]
    assert {"name": "metrics", "containerPort": 8080, "protocol": "TCP"} in container["ports"]


def readyz(port: int) -> tuple[int, dict[str, Any]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None  # not listening yet


def test_the_operator_answers_readyz_once_a_resync_pass_has_completed(
    cluster: ExistingCluster, crd_installed: None, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    operator = operator_in(cluster, namespace, tmp_path / "operator.log", ["--metrics-port", str(port)])
    answers: list[tuple[int, dict[str, Any]]] = []
    operator.start()
    try:
        deadline = time.monotonic() + 30
        while not answers or answers[-1][0] != 200:
            assert time.monotonic() < deadline, (
                answers[-3:],
                (tmp_path / "operator.log").read_text()[-2000:],
            )
            if (answer := readyz(port)) is not None:
                answers.append(answer)
            time.sleep(0.1)
    finally:
        operator.stop()
    body = answers[-1][1]
    assert body["ready"] is True and body["passes"] >= 1
    # Before its first pass it said so (503), unless that pass beat the first request.
    assert all(s == 503 and not b["ready"] and b["passes"] == 0 for s, b in answers[:-1])


def test_helm_test_hook_is_rendered_linted_and_valid(
    cluster: ExistingCluster, namespace: str, chart_crds: None
) -> None:
    docs = render(cluster, namespace)
    (hook,) = [d for d in docs if d["kind"] == "Pod"]
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "test"
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    operator = deployment["spec"]["template"]["spec"]["containers"][0]
    (check,) = hook["spec"]["containers"]
    assert check["image"] == operator["image"]  # the operator image: no other image is needed
    env = {e["name"]: e["value"] for e in check["env"]}
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert env["SERVICE"] == service["metadata"]["name"] and env["PORT"] == "8080"
    # The Service must not route to the test pod itself.
    selector = service["spec"]["selector"].items()
    assert not selector <= hook["metadata"]["labels"].items()
    # Pod Security `restricted` (the server-side dry-run below is in a namespace enforcing it).
    cluster.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    dry_run_server(cluster, namespace, [hook])
    # The script itself is valid Python.
    compile(check["command"][2], "test-ready", "exec")
    lint = helm(cluster, "lint", "--strict", str(CHART), check=False)
    assert lint.returncode == 0 and "[WARNING]" not in lint.stdout, lint.stdout
    without_service = render(cluster, namespace, "--set", "metrics.service.enabled=false")
    assert not [d for d in without_service if d["kind"] == "Pod"]


@pytest.fixture
def users(api_client: client.ApiClient, namespace: str) -> Iterator[dict[str, tuple[str, list[str]]]]:
    """Two people in `namespace`: one bound to the built-in `edit` ClusterRole, one to `view`."""
    rbac = client.RbacAuthorizationV1Api(api_client)
    people = {"edit": f"editor-{namespace}", "view": f"viewer-{namespace}"}
    for role, user in people.items():
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": f"people-{role}"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            },
        )
    yield {role: (user, ["system:authenticated"]) for role, user in people.items()}


def aggregated(api_client: client.ApiClient, role: str, resource: str) -> bool:
    rules = client.RbacAuthorizationV1Api(api_client).read_cluster_role(role).rules or []
    return any(resource in (r.resources or []) for r in rules)


def test_people_bound_to_edit_may_run_the_plugins_verbs_and_to_view_may_only_read(
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    namespace: str,
    release: str,
    chart_crds: None,
    users: dict[str, tuple[str, list[str]]],
) -> None:
    install(cluster, release, namespace)
    # kube-controller-manager's clusterrole-aggregation controller copies the rules in.
    deadline = time.monotonic() + 30
    while not (
        aggregated(api_client, "edit", "modeldeployments/status")
        and aggregated(api_client, "admin", "modeldeployments/status")
        and aggregated(api_client, "view", "modeldeployments")
    ):
        assert time.monotonic() < deadline, "the aggregation controller did not merge the chart's roles"
        time.sleep(0.2)
    group = "modelship.io"
    editor, viewer = users["edit"], users["view"]
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert can(api_client, editor, verb, "modeldeployments", group, namespace), verb
    assert can(api_client, editor, "patch", "modeldeployments", group, namespace, "status")
    assert not can(api_client, editor, "patch", "modeldeployments", group, "elsewhere", "status")
    for verb in ("get", "list", "watch"):
        assert can(api_client, viewer, verb, "modeldeployments", group, namespace), verb
    assert can(api_client, viewer, "get", "modeldeployments", group, namespace, "status")
    for verb in ("create", "patch", "delete"):
        assert not can(api_client, viewer, verb, "modeldeployments", group, namespace), verb
    assert not can(api_client, viewer, "patch", "modeldeployments", group, namespace, "status")
    roles = [d for d in render(cluster, namespace, "--set", "namespaced=true") if d["kind"] == "ClusterRole"]
    assert roles == []  # a namespaced install stays without cluster-scoped objects


def test_the_chart_works_as_a_subchart_with_global_values(
    cluster: ExistingCluster, namespace: str, chart_crds: None, tmp_path: Path
) -> None:
    parent = tmp_path / "platform"
    (parent / "charts").mkdir(parents=True)
    (parent / "templates").mkdir()  # lint --strict warns without one
    shutil.copytree(CHART, parent / "charts" / "modelship")
    (parent / "Chart.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v2",
                "name": "platform",
                "version": "1.0.0",
                "dependencies": [{"name": "modelship", "version": "0.1.0"}],
            }
        )
    )
    (parent / "values.yaml").write_text(
        yaml.safe_dump(
            {"global": {"imageRegistry": "registry.example"}, "modelship": {"ha": {"enabled": True}}}
        )
    )
    lint = helm(cluster, "lint", "--strict", str(parent), check=False)
    assert lint.returncode == 0 and "[ERROR]" not in lint.stdout, lint.stdout
    done = helm(cluster, "template", "platform", str(parent), "-n", namespace, "--include-crds", check=False)
    assert done.returncode == 0, done.stderr
    docs = [d for d in yaml.safe_load_all(done.stdout) if d]
    assert ("Deployment", "platform-modelship") in kinds(docs)
    assert ("PodDisruptionBudget", "platform-modelship") in kinds(docs)
    assert ("CustomResourceDefinition", "kopfpeerings.kopf.dev") in kinds(docs)
    # The schema stays strict under a parent: a misspelt key is still refused, by its path.
    typo = helm(cluster, "template", "platform", str(parent), "--set", "modelship.replicas=3", check=False)
    assert typo.returncode != 0 and "additional properties 'replicas' not allowed" in typo.stderr
    dry_run_server(cluster, namespace, [d for d in docs if d["kind"] != "CustomResourceDefinition"])


README_NAMESPACES = ("modelship-system", "ml", "staging")


def test_readme_install_section_runs_as_written(
    cluster: ExistingCluster, api_client: client.ApiClient, namespace: str, tmp_path: Path
) -> None:
    """The README's marked install, namespaced install, CRD upgrade and HA upgrade, in order, with
    the helm and kubectl built here, on a kubeconfig whose namespace is the test's. The pods run on
    KWOK nodes (`rollout status` sees them ready; no operator runs)."""
    blocks = docblocks.runnable_blocks(README)
    assert len(blocks) == 4 and "helm install modelship" in blocks[0], blocks
    assert "kubectl apply --server-side --force-conflicts -f charts/modelship/crds/" in blocks[2]
    # An older CRD that Helm's install wrote (another field manager): the upgrade must take it over.
    crd_path = CHART / "crds" / "modelship.io_modeldeployments.yaml"
    older = yaml.safe_load(crd_path.read_text())
    older["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] = ".status.olderPhase"
    cluster.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "--field-manager=helm",
        "-f",
        "-",
        input=yaml.safe_dump(older),
    )
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(cluster.kubectl("config", "view", "--raw"))
    env = {**cluster.env, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}
    subprocess.run(
        [str(cluster.bin_dir / "kubectl"), "config", "set-context", "--current", f"--namespace={namespace}"],
        env=env,
        check=True,
    )
    try:
        done = subprocess.run(
            ["bash", "-c", docblocks.script(README)],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert "fraud-detector" in done.stdout  # `kubectl get modeldeployments` listed the example
        live = json.loads(cluster.kubectl("get", "crd", "modeldeployments.modelship.io", "-o", "json"))
        columns = yaml.safe_load(crd_path.read_text())["spec"]["versions"][0]["additionalPrinterColumns"]
        assert live["spec"]["versions"][0]["additionalPrinterColumns"] == columns  # the older one replaced
        apps = client.AppsV1Api(api_client)
        deployment = apps.read_namespaced_deployment("modelship", "modelship-system")
        assert deployment.spec.replicas == 2  # the HA upgrade
        policy = client.PolicyV1Api(api_client)
        assert (
            policy.read_namespaced_pod_disruption_budget("modelship", "modelship-system").spec.max_unavailable
            == 1
        )
        roles = client.RbacAuthorizationV1Api(api_client)
        assert roles.read_cluster_role("modelship-edit").metadata.labels[
            "rbac.authorization.k8s.io/aggregate-to-edit"
        ]
        assert roles.list_namespaced_role("staging").items, "the namespaced install's Role in staging"
    finally:
        for ns in ("modelship-system", "ml"):
            helm(cluster, "uninstall", "modelship", "-n", ns, "--wait", check=False)
        cluster.kubectl("delete", "namespace", *README_NAMESPACES, "--wait=false", check=False)
        cluster.kubectl("delete", "-n", namespace, "-f", str(REPO / "examples" / "basic.yaml"), check=False)
