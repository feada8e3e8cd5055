"""The local control plane behaves like Kubernetes: real controllers, scheduler, admission and CRDs."""

from __future__ import annotations

import signal
import subprocess
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devcluster import build, nodes, procs
from devcluster.cluster import COMPONENTS, ExistingCluster, KubectlError, LocalCluster

from .mdhelpers import wait_until

pytestmark = pytest.mark.integration


def pod(name: str, **spec: Any) -> client.V1Pod:
    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="example.test/app:1")], **spec
        ),
    )


def coral_pod(name: str, tolerate: bool = True) -> client.V1Pod:
    tolerations = [client.V1Toleration(key=nodes.CORAL_TAINT_KEY, operator="Exists", effect="NoSchedule")]
    p = pod(
        name,
        node_selector={nodes.CORAL_LABEL: nodes.CORAL_LABEL_VALUE},
        tolerations=tolerations if tolerate else None,
    )
    p.spec.containers[0].resources = client.V1ResourceRequirements(
        requests={nodes.CORAL_RESOURCE: "1"}, limits={nodes.CORAL_RESOURCE: "1"}
    )
    return p


def unschedulable_reason(core: client.CoreV1Api, namespace: str, name: str) -> str | None:
    status = core.read_namespaced_pod(name, namespace).status
    for cond in status.conditions or []:
        if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
            return str(cond.message)
    return None


def test_deployment_gets_replicaset_and_ready_pods_on_fake_nodes(
    api_client: client.ApiClient, namespace: str
) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=3,
                selector=client.V1LabelSelector(match_labels=labels),
                template=client.V1PodTemplateSpec(
                    metadata=client.V1ObjectMeta(labels=labels),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="web", image="example.test/web:1")]
                    ),
                ),
            ),
        ),
    )
    replicasets = wait_until(
        "a ReplicaSet owned by the Deployment",
        lambda: core.api_client and apps.list_namespaced_replica_set(namespace).items,
    )
    assert replicasets[0].metadata.owner_references[0].name == "web"

    def ready_pods() -> list[client.V1Pod] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=web").items
        ready = [
            p
            for p in pods
            if p.status.phase == "Running"
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
        ]
        return ready if len(ready) == 3 else None

    pods = wait_until("3 Running and Ready pods", ready_pods, timeout=90)
    fake_cpu_nodes = {n.name for n in nodes.default_nodes() if nodes.CORAL_RESOURCE not in n.extended}
    assert {p.spec.node_name for p in pods} <= fake_cpu_nodes
    wait_until(
        "the Deployment to report 3 available replicas",
        lambda: apps.read_namespaced_deployment("web", namespace).status.available_replicas == 3,
    )


def test_coral_pods_land_on_the_coral_node_and_wait_for_taint_or_capacity(
    api_client: client.ApiClient, namespace: str
) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, coral_pod("on-coral"))
    placed = wait_until(
        "the Coral pod to be scheduled",
        lambda: core.read_namespaced_pod("on-coral", namespace).spec.node_name,
    )
    assert placed.startswith("kwok-coral-")

    core.create_namespaced_pod(namespace, coral_pod("no-toleration", tolerate=False))
    reason = wait_until("a scheduler reason", lambda: unschedulable_reason(core, namespace, "no-toleration"))
    assert "untolerated taint" in reason

    core.create_namespaced_pod(namespace, coral_pod("device-taken"))
    reason = wait_until("a scheduler reason", lambda: unschedulable_reason(core, namespace, "device-taken"))
    assert f"Insufficient {nodes.CORAL_RESOURCE}" in reason
    assert core.read_namespaced_pod("device-taken", namespace).spec.node_name is None


def test_service_gets_endpointslice_of_ready_pod_addresses(
    api_client: client.ApiClient, namespace: str
) -> None:
    core, discovery = client.CoreV1Api(api_client), client.DiscoveryV1Api(api_client)
    for i in range(2):
        p = pod(f"backend-{i}")
        p.metadata.labels = {"app": "backend"}
        core.create_namespaced_pod(namespace, p)
    core.create_namespaced_service(
        namespace,
        client.V1Service(
            metadata=client.V1ObjectMeta(name="backend"),
            spec=client.V1ServiceSpec(
                selector={"app": "backend"}, ports=[client.V1ServicePort(port=80, target_port=8080)]
            ),
        ),
    )

    def pod_ips() -> set[str] | None:
        pods = core.list_namespaced_pod(namespace, label_selector="app=backend").items
        ips = {p.status.pod_ip for p in pods if p.status.pod_ip}
        return ips if len(ips) == 2 else None

    ips = wait_until("both pods to get an IP", pod_ips)

    def ready_addresses() -> set[str] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            namespace, label_selector="kubernetes.io/service-name=backend"
        ).items
        addrs = {
            a
            for s in slices
            for e in s.endpoints or []
            if e.conditions and e.conditions.ready
            for a in e.addresses
        }
        return addrs if addrs == ips else None

    wait_until("an EndpointSlice listing both ready pod addresses", ready_addresses)


def test_restricted_namespace_refuses_privileged_pod(api_client: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    privileged = pod("privileged")
    privileged.spec.containers[0].security_context = client.V1SecurityContext(privileged=True)
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, privileged)
    assert refused.value.status == 403
    assert "violates PodSecurity" in refused.value.body
    assert "privileged" in refused.value.body


def httproute(name: str, weight: int) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {
            "parentRefs": [{"name": "gateway"}],
            "rules": [{"backendRefs": [{"name": "svc", "port": 80, "weight": weight}]}],
        },
    }


def test_httproute_accepted_and_malformed_one_refused(api_client: client.ApiClient, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    group, version, plural = "gateway.networking.k8s.io", "v1", "httproutes"
    custom.create_namespaced_custom_object(group, version, namespace, plural, httproute("good", 50))
    stored = custom.get_namespaced_custom_object(group, version, namespace, plural, "good")
    assert stored["spec"]["rules"][0]["backendRefs"][0]["weight"] == 50
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(group, version, namespace, plural, httproute("bad", -1))
    assert refused.value.status == 422
    assert "weight" in refused.value.body


def test_cached_apiserver_reports_the_pinned_version(cluster: ExistingCluster) -> None:
    pinned = build.load_versions()["KUBERNETES_VERSION"]
    out = subprocess.run(
        [str(cluster.bin_dir / "kube-apiserver"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == f"Kubernetes {pinned}"


def test_second_cluster_runs_side_by_side_and_stops_by_pid(cluster: ExistingCluster) -> None:
    second = LocalCluster.create(fake_nodes=[nodes.cpu_node(0)])
    with second:
        assert isinstance(cluster, ExistingCluster)
        if isinstance(cluster, LocalCluster):
            assert second.ports["apiserver"] != cluster.ports["apiserver"]
        # The same interface over a kubeconfig: how suites reach kind or a real cluster.
        other = ExistingCluster(kubeconfig=second.kubeconfig, bin_dir=second.bin_dir)
        assert other.kubectl("get", "nodes", "-o", "name").split() == ["node/kwok-cpu-0"]
        children = list(second.children.values())
        assert [c.name for c in children] == list(COMPONENTS)
        records = procs.records_under(second.state_dir)
        assert {(r.name, r.pid) for r in records} == {(c.name, c.pid) for c in children}
        # Restart helpers for fault tests: each by its pid, on the same ports, with the same data.
        second.kubectl("create", "configmap", "survivor", "--from-literal=k=v")
        ports = dict(second.ports)
        # etcd stopped cleanly (SIGTERM); the API server crashes (SIGKILL: on SIGTERM it waits out
        # its clients' watches, up to the 10 s bound).
        for name, sig in (("etcd", signal.SIGTERM), ("kube-apiserver", signal.SIGKILL)):
            old = next(r for r in procs.records_under(second.state_dir) if r.name == name)
            second.restart(name, sig=sig)
            assert not procs.is_running(old.pid, old.start)
            assert second.children[name].pid != old.pid
            assert second.kubectl("get", "configmap", "survivor", "-o", "jsonpath={.data.k}") == "v"
            second.kubectl("create", "configmap", f"after-{name}")
        assert second.ports == ports
        # Down for a while: the API is refused until the component is started again.
        second.stop_component("etcd", sig=signal.SIGKILL)
        with pytest.raises(KubectlError):
            second.kubectl("get", "configmap", "survivor", "--request-timeout=1s")
        second.start_component("etcd")
        assert second.kubectl("get", "configmap", "survivor", "-o", "name").strip() == "configmap/survivor"
        with pytest.raises(ValueError, match="unknown component 'kubelet'; known: etcd, kube-apiserver"):
            second.restart("kubelet")  # this cluster has no real node
    assert all(not c.running for c in children)
    assert not second.state_dir.exists()
