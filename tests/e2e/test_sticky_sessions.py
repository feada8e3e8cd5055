"""Sticky sessions through the real gateway (Traefik), by cookie: at a 50% step new clients split
between the revisions and each answer sets the cookie of the revision that served it; once the
canary's weight moves to 90%, a client that sends its cookie back is served by that revision on
every request (stable's clients too, though stable has 10% of new sessions); after an abort every
client reaches stable. The counts are the pods' own, per revision."""

from __future__ import annotations

import http.client
from collections import Counter
from typing import Any

import pytest

from loadgen.mix import holdout_samples
from localworld.rollouts import OperatorProcess, model_deployment
from localworld.world import Endpoint
from modelship import api
from modelship.core import control

from .conftest import Rollout
from .helpers import eventually

pytestmark = pytest.mark.e2e

NAME = "sticky"
COOKIE = "modelship-revision"
CLIENTS = 40  # new sessions at 50%: each revision gets at least 5 but for a 1e-7 chance
REQUESTS = 10  # per kept session
STEPS: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}, {"setWeight": 90}, {"pause": {}}]


def predict(endpoint: Endpoint, cookie: str | None = None, waiting: bool = False) -> str | None:
    """One prediction through Traefik (answered 200), sending `cookie` if given; the revision the
    answer's Set-Cookie names. `waiting` for the gateway to load a change: a 503 (its view of a
    backend's endpoints not yet updated) is None, to ask again."""
    host, _, port = endpoint.url.removeprefix("http://").partition(":")
    conn = http.client.HTTPConnection(host, int(port or 80), timeout=10)
    headers = {"Host": endpoint.host, "Content-Type": "application/json"}
    if cookie is not None:
        headers["Cookie"] = f"theme=dark; {COOKIE}={cookie}"  # one cookie among others
    try:
        conn.request("POST", "/predict", body=holdout_samples()[0].body, headers=headers)
        answer = conn.getresponse()
        answer.read()
        if waiting and answer.status == 503:
            return None
        assert answer.status == 200, answer.status
        stamps = [
            v for k, v in answer.getheaders() if k.lower() == "set-cookie" and v.startswith(f"{COOKIE}=")
        ]
        assert len(stamps) == 1, answer.getheaders()
        value, _, attributes = stamps[0].partition(";")
        assert attributes.strip() == "Path=/; HttpOnly", stamps
        return value.removeprefix(f"{COOKIE}=")
    finally:
        conn.close()


def at_step(rollout: Rollout, step: int) -> dict[str, Any]:
    def paused() -> dict[str, Any] | None:
        canary = rollout.mds.status(NAME).get("rollout", {}).get("canary") or {}
        return canary if canary.get("step") == step else None

    return eventually(f"the pause at step {step + 1}", paused, timeout=120)


def command(rollout: Rollout, verb: str) -> None:
    """What `kubectl modelship <verb>` does, again if the operator wrote the status meanwhile."""

    def written() -> bool:
        md = rollout.mds.get(NAME)
        assert md is not None
        spec = api.ModelDeploymentSpec.model_validate(md["spec"])
        patch = control.patch_for(verb, spec, api.read_status(md["status"], spec))
        version = md["metadata"]["resourceVersion"]
        return (
            rollout.mds.kube.patch_md(rollout.namespace, NAME, patch.target, patch.body, version) is not None
        )

    eventually(f"the {verb} to be written", written, timeout=30)


def kept(rollout: Rollout, endpoint: Endpoint, revision: str) -> Counter[str]:
    """REQUESTS predictions of a session on `revision`; which revision served them (the pods' counts),
    each answer naming that same revision."""
    before = rollout.served()
    stamped = Counter(predict(endpoint, revision) for _ in range(REQUESTS))
    served = rollout.served() - before
    assert stamped == served, (stamped, served)
    return served


def test_sessions_stay_on_their_revision_while_the_weight_moves_and_return_to_stable_at_abort(
    rollout: Rollout, operator: OperatorProcess
) -> None:
    manifest = model_deployment(NAME, rollout.world.image("v1"), "v1", STEPS, replicas=1)
    manifest["spec"]["traffic"]["sessionAffinity"] = {"cookie": {"name": COOKIE}}
    rollout.create(manifest)
    stable = rollout.mds.wait_phase(NAME, "Healthy")["stableRevision"]
    endpoint = rollout.endpoint(NAME)
    eventually(
        "stable's answers to carry its cookie", lambda: predict(endpoint, waiting=True) == stable, timeout=30
    )
    rollout.set_image(NAME, "v2")
    candidate = at_step(rollout, 1)["revision"]

    # New sessions follow the weights, each told where it landed.
    eventually(
        "a new session on the candidate", lambda: predict(endpoint, waiting=True) == candidate, timeout=30
    )
    before = rollout.served()
    landed = Counter(predict(endpoint) for _ in range(CLIENTS))
    assert landed == rollout.served() - before, landed
    assert landed[stable] >= 5 and landed[candidate] >= 5 and landed.total() == CLIENTS, landed

    # The weight moves to 90%: each kept session stays where it began.
    command(rollout, "promote")
    assert at_step(rollout, 3)["weight"] == 90
    assert kept(rollout, endpoint, candidate) == {candidate: REQUESTS}
    assert kept(rollout, endpoint, stable) == {stable: REQUESTS}

    # Aborted: the candidate's session rule is gone, and its sessions are served by stable.
    command(rollout, "abort")
    rollout.mds.wait_phase(NAME, "Degraded")
    eventually(
        "the candidate's session on stable",
        lambda: predict(endpoint, candidate, waiting=True) == stable,
        timeout=30,
    )
    assert kept(rollout, endpoint, candidate) == {stable: REQUESTS}
