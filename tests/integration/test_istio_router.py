"""The istio router against the real API server with Istio's CRDs installed (istio.io/api, pinned in
versions.env): the API server stores what the operator writes into a VirtualService, the weights of
each step and the header routes are written and read back, modelship's routes go at promotion and
at abort, and a user's other routes stay. No istiod or Envoy runs here: nothing routes by it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from devcluster import istio as istio_crds
from devcluster.cluster import ExistingCluster
from modelship.core.shadow import PERCENT_HEADER as SHADOW_PERCENT
from modelship.core.shadow import REVISION_HEADER as SHADOW_REVISION
from modelship.kube.storage import Storage, virtualservice_path

from .mdhelpers import Operator, crd_installed, create_md, example, kube, operator, refusal, wait_until
from .test_rollouts import IMAGES, NAME, deploy_stable, manifest, plugin, set_image, status, until_status

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

VS = "fraud-vs"
QA = {"name": "qa", "match": [{"headerName": "X-Canary", "headerValue": "yes"}]}
STEPS = [{"setHeaderRoute": QA}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
OTHER = {
    "name": "other",
    "match": [{"uri": {"prefix": "/other"}}],
    "route": [{"destination": {"host": "other", "port": {"number": 8080}}}],
}


@pytest.fixture(scope="module", autouse=True)
def istio_installed(cluster: ExistingCluster) -> None:
    istio_crds.install(cluster)


def istio_manifest(image: str = IMAGES["a"], **vs: Any) -> dict[str, Any]:
    return manifest(image, STEPS, traffic={"router": "istio", "virtualService": {"name": VS, **vs}})


def vs_of(kube: Storage, namespace: str) -> dict[str, Any]:
    return kube.get(virtualservice_path(namespace, VS)) or {"spec": {"http": []}}


def routes(kube: Storage, namespace: str) -> dict[str, dict[str, Any]]:
    return {r.get("name", ""): r for r in vs_of(kube, namespace)["spec"].get("http") or []}


def weights(route: dict[str, Any]) -> tuple[int, int]:
    by_host = {d["destination"]["host"]: d.get("weight") for d in route["route"]}
    return by_host[f"{NAME}-stable"], by_host[f"{NAME}-canary"]


def condition(kube: Storage, namespace: str, type_: str) -> dict[str, Any]:
    return next(c for c in status(kube, namespace).get("conditions", []) if c["type"] == type_)


def pinned(kube: Storage, namespace: str, managed: str) -> None:
    """A new image, and the rollout at its pause after the setHeaderRoute step: the header route
    is stored first in the VirtualService, the managed route still at 100/0."""
    set_image(kube, namespace, IMAGES["b"])
    until_status(kube, namespace, "at the pause after setHeaderRoute", **{"rollout.canary.step": 1})
    http = vs_of(kube, namespace)["spec"]["http"]
    header = next(r for r in http if r["name"] == f"{NAME}-header-qa")
    assert http.index(header) == [r["name"] for r in http].index(managed) - 1  # just before it
    assert header["match"][0]["headers"]["x-canary"] == {"exact": "yes"}  # lowercased
    assert header["route"] == [
        {"destination": {"host": f"{NAME}-canary", "port": {"number": 80}}, "weight": 100}
    ]
    assert weights(routes(kube, namespace)[managed]) == (100, 0)
    canary = status(kube, namespace)["rollout"]["canary"]
    assert (canary["weight"], canary["headerRoutes"]) == (0, [QA])


def test_without_istios_crds_an_istio_model_deployment_says_so_and_other_rollouts_go_on(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    cluster.kubectl("delete", "crd", "-l", "chart=istio", "--wait=true")
    try:
        create_md(kube, namespace, istio_manifest(hosts=["fraud"]))

        def missing() -> dict[str, Any] | None:
            found = [c for c in status(kube, namespace).get("conditions", []) if c["type"] == "TrafficRouted"]
            return found[0] if found and found[0]["reason"] == "VirtualServiceMissing" else None

        routed = wait_until("TrafficRouted=False VirtualServiceMissing", missing)
        assert routed["message"] == f"VirtualService {VS} does not exist yet; modelship creates it"
        other = copy.deepcopy(example("basic.yaml"))
        other["metadata"]["name"] = "other-model"
        deploy_stable(kube, namespace, other)  # the same operator goes on with everything else
        assert "Traceback" not in operator.log_path.read_text()
    finally:
        istio_crds.install(cluster)  # for the tests after this one


def test_a_created_virtual_service_carries_each_steps_weights_and_loses_the_header_route_at_promotion(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    doc = istio_manifest(hosts=["fraud.example.com"], gateways=["istio-system/public"])
    deploy_stable(kube, namespace, doc)
    wait_until("the VirtualService created at 100/0", lambda: NAME in routes(kube, namespace))
    vs = vs_of(kube, namespace)
    assert vs["spec"]["hosts"] == ["fraud.example.com"] and vs["spec"]["gateways"] == ["istio-system/public"]
    assert vs["metadata"]["ownerReferences"][0]["name"] == NAME
    assert weights(routes(kube, namespace)[NAME]) == (100, 0)

    pinned(kube, namespace, NAME)
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "at the pause after 50%", **{"rollout.canary.step": 3})
    assert weights(routes(kube, namespace)[NAME]) == (50, 50)
    assert f"{NAME}-header-qa" in routes(kube, namespace)  # beside the weights
    routed = condition(kube, namespace, "TrafficRouted")
    assert (routed["status"], routed["message"]) == (
        "True",
        f"VirtualService {VS}: {NAME}-stable=50, {NAME}-canary=50",
    )
    plugin(cluster, "promote", NAME, "-n", namespace)
    until_status(kube, namespace, "promoted", phase="Healthy", **{"rollout.canary": None})
    wait_until("only the weighted route, at 100/0", lambda: list(routes(kube, namespace)) == [NAME])
    assert weights(routes(kube, namespace)[NAME]) == (100, 0)


def test_in_a_users_virtual_service_the_other_routes_stay_and_an_abort_removes_the_header_route(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    primary = {
        "name": "primary",
        "match": [{"uri": {"prefix": "/fraud"}}],
        "timeout": "5s",
        "route": [{"destination": {"host": f"{NAME}-stable", "port": {"number": 80}}}],
    }
    kube.create(
        virtualservice_path(namespace),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": VS},
            "spec": {"hosts": ["shop.example.com"], "gateways": ["public"], "http": [OTHER, primary]},
        },
    )
    deploy_stable(kube, namespace, istio_manifest(routes=["primary"]))
    wait_until("the managed route at 100/0", lambda: weights(routes(kube, namespace)["primary"]) == (100, 0))
    pinned(kube, namespace, "primary")
    vs = vs_of(kube, namespace)
    assert vs["spec"]["http"][0] == OTHER and "ownerReferences" not in vs["metadata"]
    assert vs["spec"]["hosts"] == ["shop.example.com"] and vs["spec"]["gateways"] == ["public"]
    header = routes(kube, namespace)[f"{NAME}-header-qa"]
    assert header["match"] == [{"uri": {"prefix": "/fraud"}, "headers": {"x-canary": {"exact": "yes"}}}]

    plugin(cluster, "abort", NAME, "-n", namespace)
    until_status(kube, namespace, "aborted", phase="Degraded")
    wait_until("the header route gone", lambda: list(routes(kube, namespace)) == ["other", "primary"])
    after = routes(kube, namespace)
    assert after["other"] == OTHER and after["primary"]["timeout"] == "5s"
    assert weights(after["primary"]) == (100, 0)


def test_a_route_named_but_missing_holds_the_rollout_and_says_so(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    kube.create(
        virtualservice_path(namespace),
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": VS},
            "spec": {"hosts": ["shop.example.com"], "http": [OTHER]},
        },
    )
    doc = istio_manifest(routes=["primary"])
    create_md(kube, namespace, doc)
    routed = wait_until(
        "TrafficRouted=False",
        lambda: next(
            (c for c in status(kube, namespace).get("conditions", []) if c["type"] == "TrafficRouted"), None
        ),
    )
    assert (routed["status"], routed["reason"]) == ("False", "RuleNotFound")
    assert f"VirtualService {VS} has no managed HTTP route" in routed["message"]
    assert vs_of(kube, namespace)["spec"]["http"] == [OTHER]  # nothing written into it


@pytest.mark.parametrize(
    ("traffic", "field", "reason"),
    [
        ({"router": "istio"}, "spec.traffic.virtualService", "required when router is istio"),
        (
            {"router": "gatewayAPI", "httpRoute": "fraud", "virtualService": {"name": VS}},
            "spec.traffic.virtualService",
            "required when router is istio, and only then",
        ),
        (
            {"router": "istio", "virtualService": {"name": "Not A Name"}},
            "spec.traffic.virtualService.name",
            "",
        ),
        (
            {"router": "istio", "virtualService": {"name": VS, "routes": []}},
            "spec.traffic.virtualService.routes",
            "at least 1 items",
        ),
    ],
    ids=["no-virtual-service", "virtual-service-with-gateway-api", "bad-name", "empty-routes"],
)
def test_a_bad_istio_traffic_spec_is_refused_naming_the_field(
    kube: Storage, namespace: str, crd_installed: None, traffic: dict[str, Any], field: str, reason: str
) -> None:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"]["traffic"] = traffic
    message = refusal(kube, namespace, doc)
    assert field in message and reason in message, message


def test_a_shadow_step_marks_the_managed_route_and_the_mark_goes_at_abort(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    steps = [{"shadow": {"percent": 50}}, {"pause": {}}]
    traffic = {"router": "istio", "virtualService": {"name": VS, "hosts": ["fraud"]}}
    deploy_stable(kube, namespace, manifest(IMAGES["a"], steps, traffic=traffic))
    wait_until("the VirtualService created", lambda: NAME in routes(kube, namespace))
    request = routes(kube, namespace)[NAME]["headers"]["request"]
    assert request == {"remove": [SHADOW_PERCENT, SHADOW_REVISION]}  # a client cannot ask for copies
    set_image(kube, namespace, IMAGES["b"])
    current = until_status(
        kube, namespace, "at the pause after the shadow step", **{"rollout.canary.step": 1}
    )
    assert current["rollout"]["canary"]["shadowPercent"] == 50
    candidate = current["rollout"]["canary"]["revision"]
    managed = routes(kube, namespace)[NAME]
    assert managed["headers"]["request"] == {"set": {SHADOW_PERCENT: "50", SHADOW_REVISION: candidate}}
    assert weights(managed) == (100, 0)  # users see only stable
    plugin(cluster, "abort", NAME, "-n", namespace)
    until_status(kube, namespace, "aborted", phase="Degraded")
    wait_until(
        "the mark removed",
        lambda: (
            routes(kube, namespace)[NAME]["headers"]["request"]
            == {"remove": [SHADOW_PERCENT, SHADOW_REVISION]}
        ),
    )


def test_sticky_sessions_keep_each_revisions_route_and_stamp_and_the_canarys_go_at_abort(
    kube: Storage, namespace: str, operator: Operator, cluster: ExistingCluster
) -> None:
    steps = [{"setWeight": 50}, {"pause": {}}]
    traffic = {
        "router": "istio",
        "virtualService": {"name": VS, "hosts": ["fraud"]},
        "sessionAffinity": {"header": {"name": "x-model-revision"}},
    }
    stable = deploy_stable(kube, namespace, manifest(IMAGES["a"], steps, traffic=traffic))
    set_image(kube, namespace, IMAGES["b"])
    current = until_status(kube, namespace, "at the pause after 50%", **{"rollout.canary.step": 1})
    candidate = current["rollout"]["canary"]["revision"]
    by_name = routes(kube, namespace)
    assert list(by_name) == [f"{NAME}-session-stable", f"{NAME}-session-canary", NAME]
    for backend, revision in (("stable", stable), ("canary", candidate)):
        session = by_name[f"{NAME}-session-{backend}"]
        assert session["match"] == [{"headers": {"x-model-revision": {"exact": revision}}}]
        (dest,) = session["route"]
        assert dest["destination"]["host"] == f"{NAME}-{backend}"
        assert dest["headers"] == {"response": {"set": {"x-model-revision": revision}}}
    stamps = {d["destination"]["host"]: d["headers"] for d in by_name[NAME]["route"]}
    assert stamps[f"{NAME}-canary"] == {"response": {"set": {"x-model-revision": candidate}}}
    assert weights(by_name[NAME]) == (50, 50)
    plugin(cluster, "abort", NAME, "-n", namespace)
    until_status(kube, namespace, "aborted", phase="Degraded")
    wait_until(
        "the canary's session route gone",
        lambda: list(routes(kube, namespace)) == [f"{NAME}-session-stable", NAME],
    )
    assert weights(routes(kube, namespace)[NAME]) == (100, 0)
