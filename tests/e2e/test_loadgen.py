"""The load generator against real pods: feedback reaches the pod that answered (the router's
stand-in for session persistence), and online accuracy shows in Prometheus per revision."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from kubernetes import client

from loadgen import Load
from loadgen.mix import holdout_samples
from localworld.catalogue import Catalogue
from localworld.podrunner import PodRunner
from localworld.prometheus import Prometheus
from localworld.router import Router

from .helpers import eventually, service, serving_deployment
from .test_router import wait_routable

pytestmark = pytest.mark.e2e


def deploy_demo(api_client: client.ApiClient, namespace: str, catalogue: Catalogue, version: str) -> None:
    image = catalogue.by_name(version)
    deployment = serving_deployment(
        "risk", catalogue, replicas=3, sha256=image.model_sha256, model="risk", revision=f"risk-{version}"
    )
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = image.ref
    client.AppsV1Api(api_client).create_namespaced_deployment(namespace, deployment)
    client.CoreV1Api(api_client).create_namespaced_service(namespace, service("risk", f"risk-{version}"))
    wait_routable(api_client, namespace, {"risk": 3})


def test_feedback_through_the_router_reaches_the_replica_that_answered_and_prometheus_counts_accuracy(
    api_client: client.ApiClient,
    namespace: str,
    catalogue: Catalogue,
    pod_runner: PodRunner,
    prometheus: Prometheus,
    make_router: Callable[[str, str], Router],
) -> None:
    deploy_demo(api_client, namespace, catalogue, "v1")
    router = make_router(namespace, "risk")

    summary = (
        Load(f"{router.url}/predict", holdout_samples(), rate=50, duration=6, feedback_ratio=1).start().wait()
    )

    assert summary.codes == {200: 300}
    # Three replicas, each remembering only its own predictions: every label still found its
    # prediction, because the router sent it where the prediction came from.
    assert summary.feedback_codes == {200: 300}
    assert router.feedback == {"remembered": 300}
    assert len(router.by_endpoint) == 3
    assert summary.accuracy is not None and 0.8 < summary.accuracy < 0.97  # v1: 0.889 on the holdout

    def outcomes() -> dict[str, int]:
        query = (
            f'sum by (outcome) (modelserver_feedback_total{{namespace="{namespace}", revision="risk-v1"}})'
        )
        return {s["metric"]["outcome"]: int(float(s["value"][1])) for s in prometheus.query(query)}

    expected = {"correct": summary.correct, "incorrect": summary.incorrect}
    eventually(f"Prometheus feedback outcomes == {expected}", lambda: outcomes() == expected, timeout=20)


def test_feedback_for_an_unknown_request_id_is_routed_as_usual_and_counted(
    api_client: client.ApiClient,
    namespace: str,
    catalogue: Catalogue,
    pod_runner: PodRunner,
    make_router: Callable[[str, str], Router],
) -> None:
    deploy_demo(api_client, namespace, catalogue, "v1")
    router = make_router(namespace, "risk")
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        f"{router.url}/feedback",
        data=json.dumps({"request_id": "never-predicted", "label": "a"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 404  # a replica said it does not know the id
    assert router.feedback == {"unknown": 1}
    assert sum(router.by_endpoint.values()) == 1
