"""The load generator through Traefik to real pods, with feedback.

Traefik's Gateway API provider has no session persistence, so for pods that issue no feedback
tokens (these run without FEEDBACK_KEY and POD_IP) a label reaches the replica that made the
prediction only by chance: the others do not know its request id and answer 404. The test shows
that, and that what does arrive is counted right in Prometheus per revision. The operator's pods
issue tokens, and every label counts whichever pod it reaches: tests/e2e/test_feedback.py."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from kubernetes import client

from loadgen import Load
from loadgen.mix import holdout_samples
from localworld.prometheus import Prometheus
from localworld.world import Endpoint, LocalWorld

from .helpers import deploy_revision, eventually, expose_routed

pytestmark = pytest.mark.e2e
REPLICAS = 3


def deploy_demo(api_client: client.ApiClient, namespace: str, world: LocalWorld, version: str) -> Endpoint:
    deploy_revision(api_client, namespace, world, "risk", version, REPLICAS)
    return expose_routed(world, namespace, "risk", {"risk": 100})


def test_feedback_through_traefik_mostly_misses_the_replica_that_answered_and_what_arrives_is_counted(
    api_client: client.ApiClient, namespace: str, world: LocalWorld, prometheus: Prometheus
) -> None:
    endpoint = deploy_demo(api_client, namespace, world, "v1")
    load = Load(
        f"{endpoint.url}/predict",
        holdout_samples(),
        rate=50,
        duration=6,
        feedback_ratio=1,
        host=endpoint.host,
    )
    summary = load.start().wait()

    assert summary.codes == {200: 300}
    # Without affinity a label finds its prediction only when it lands on the replica that made it.
    # Traefik balances round robin, and a client sends its label right after its prediction, so the
    # label mostly lands on the next replica: far fewer than one in REPLICAS find theirs.
    found, unknown = summary.feedback_codes.get(200, 0), summary.feedback_codes.get(404, 0)
    assert found + unknown == 300, summary.feedback_codes
    assert found < 300 / REPLICAS and unknown > 300 / 2, summary.feedback_codes

    def outcomes() -> dict[str, int]:
        query = (
            f'sum by (outcome) (modelserver_feedback_total{{namespace="{namespace}", revision="risk-v1"}})'
        )
        return {s["metric"]["outcome"]: int(float(s["value"][1])) for s in prometheus.query(query)}

    expected = {"correct": summary.correct, "incorrect": summary.incorrect}
    eventually(f"Prometheus feedback outcomes == {expected}", lambda: outcomes() == expected, timeout=20)


def test_feedback_for_an_unknown_request_id_is_answered_404(
    api_client: client.ApiClient, namespace: str, world: LocalWorld
) -> None:
    endpoint = deploy_demo(api_client, namespace, world, "v1")
    request = urllib.request.Request(
        f"{endpoint.url}/feedback",
        data=json.dumps({"request_id": "never-predicted", "label": "a"}).encode(),
        headers={"Content-Type": "application/json", "Host": endpoint.host},
    )
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=10)
    assert err.value.code == 404  # a replica said it does not know the id
