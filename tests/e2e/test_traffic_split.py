"""Traefik splits traffic by the HTTPRoute's backend weights. The counts come from the pods' own
/metrics, per revision, so neither a router's bookkeeping nor a scrape interval stands between the
requests and the verdict."""

from __future__ import annotations

import pytest
from kubernetes import client

from loadgen import Load
from loadgen.mix import holdout_samples
from localworld.podmetrics import served_by_revision
from localworld.world import LocalWorld

from .helpers import deploy_revision, eventually, expose_routed

pytestmark = pytest.mark.e2e
REQUESTS = 1000


def test_at_weight_20_a_fifth_of_1000_requests_reach_the_canary(
    api_client: client.ApiClient, namespace: str, world: LocalWorld
) -> None:
    stable = deploy_revision(api_client, namespace, world, "risk-stable", "v1", replicas=2)
    canary = deploy_revision(api_client, namespace, world, "risk-canary", "v2", replicas=1)
    endpoint = expose_routed(world, namespace, "risk", {"risk-stable": 80, "risk-canary": 20})
    core = client.CoreV1Api(api_client)

    def load(count: int) -> Load:
        rate = 200.0
        return Load(
            f"{endpoint.url}/predict", holdout_samples(), rate, count / rate, count=count, host=endpoint.host
        )

    # Traefik may load the route a moment before it knows the canary Service's endpoints: start
    # counting once both revisions have answered.
    def both_answer() -> bool:
        load(20).start().wait()
        served = served_by_revision(core, namespace)
        return served[stable] > 0 and served[canary] > 0

    eventually("both revisions to answer through the route", both_answer, timeout=30)

    before = served_by_revision(core, namespace)
    summary = load(REQUESTS).start().wait()
    after = served_by_revision(core, namespace)

    assert summary.codes == {200: REQUESTS}, summary.lines()
    reached = {r: after[r] - before[r] for r in (stable, canary)}
    assert sum(reached.values()) == REQUESTS, reached
    assert abs(reached[canary] / REQUESTS - 0.20) <= 0.05, reached
