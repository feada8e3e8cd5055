"""Notifications against a real HTTP receiver on 127.0.0.1 and the real API server: the payloads
of a canary rollout (webhook, Slack, Teams), a receiver answering 500 (retried, then counted and
shown as a condition), one that hangs (the rollout goes on, the other targets are told), an
operator-wide target, and the URL never in the operator's log.

The operator runs as a process (`python -m modelship run`) with its metrics port; pods are KWOK
pods, Ready a few seconds after scheduling.
"""

from __future__ import annotations

import copy
import json
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster
from devcluster.net import free_port
from localworld import crashpoint
from localworld.rollouts import ModelDeployments, at
from modelship.kube import storage
from modelship.kube.storage import Storage

from .mdhelpers import (
    Operator,
    crd_installed,
    deploy_stable,
    example,
    kube,
    md_path,
    md_status,
    refusal,
    revision,
    wait_until,
)

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration

NAME = "fraud-detector"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "abc"}
STEPS = [{"setWeight": 50}, {"pause": {"duration": "1s"}}]
ROLLOUT = ["RolloutStarted", "StepCompleted", "Paused", "Promoted", "Healthy"]


class Receiver:
    """An HTTP server on 127.0.0.1: a path ending in `/fail` answers 500, one ending in `/hang`
    answers only once `release` is set, any other 200. It records every request as it arrives."""

    def __init__(self) -> None:
        self.token = uuid.uuid4().hex  # in every URL: it must never show in a log or a status
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.got: list[tuple[str, dict[str, Any], float]] = []  # (path, body, arrival)
        self.hanging = 0
        self.answered_hang = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                path = self.path.rsplit("/", 1)[-1]
                with receiver.lock:
                    receiver.got.append((path, body, time.monotonic()))
                if path == "hang":
                    with receiver.lock:
                        receiver.hanging += 1
                    receiver.release.wait(120)
                    with receiver.lock:
                        receiver.hanging -= 1
                        receiver.answered_hang += 1
                self.send_response(500 if path == "fail" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{self.token}/{path}"

    def bodies(self, path: str) -> list[dict[str, Any]]:
        with self.lock:
            return [body for p, body, _ in self.got if p == path]

    def times(self, path: str) -> list[float]:
        with self.lock:
            return [at_ for p, _, at_ in self.got if p == path]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def secret(api_client: client.ApiClient, namespace: str, name: str, data: dict[str, str]) -> None:
    body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
    client.CoreV1Api(api_client).create_namespaced_secret(namespace, body)


def target(name: str, type_: str, key: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, "urlFrom": {"secretKeyRef": {"name": "hooks", "key": key}}, **fields}


def manifest(image: str, notifications: list[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"].update(
        {
            "image": image,
            "replicas": 2,
            "strategy": {"canary": {"steps": STEPS, "scaleDownDelay": "2s"}},
            "notifications": notifications,
        }
    )
    return doc


def start_operator(
    cluster: ExistingCluster, namespace: str, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[Operator, int]:
    port = free_port()
    op = Operator(
        {**cluster.env, **(env or {})},
        tmp_path / "operator.log",
        namespaces=[namespace],
        args=["--metrics-port", str(port)],
    )
    return op.start(), port


def notified(payloads: list[dict[str, Any]]) -> list[str]:
    return [p["trigger"] for p in payloads]


def condition(kube: Storage, namespace: str) -> dict[str, Any] | None:
    conditions = md_status(kube, namespace, NAME).get("conditions") or []
    return next((c for c in conditions if c["type"] == "NotificationsDelivered"), None)


def counted(port: int, target_: str, result: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        labels = (f'target="{target_}"', f'result="{result}"')
        if line.startswith("modelship_notifications_total{") and all(x in line for x in labels):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def roll_out(kube: Storage, namespace: str, new: dict[str, Any]) -> str:
    """Set the new image; wait until it is promoted and Healthy; return its revision."""
    kube.merge(md_path(namespace, NAME), {"spec": {"image": new["spec"]["image"]}}, "modelship-tests")
    rev = revision(new)

    def promoted() -> bool:
        current = md_status(kube, namespace, NAME)
        return current.get("stableRevision") == rev and current.get("phase") == "Healthy"

    wait_until("the canary promoted and Healthy", promoted, timeout=90, interval=0.2)
    return rev


def operator_log(op: Operator) -> str:
    return op.log_path.read_text()


def test_a_rollout_is_told_to_a_webhook_slack_and_teams_and_the_url_is_never_logged(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    secret(
        api_client,
        namespace,
        "hooks",
        {"webhook": receiver.url("webhook"), "slack": receiver.url("slack"), "teams": receiver.url("teams")},
    )
    targets = [
        target("ci", "webhook", "webhook"),
        target("chat", "slack", "slack", triggers=["RolloutStarted", "Promoted"]),
        target("team", "teams", "teams", triggers=["Promoted"]),
    ]
    op, port = start_operator(cluster, namespace, tmp_path)
    try:
        stable = deploy_stable(kube, namespace, manifest(IMAGES["a"], targets))
        wait_until("Healthy told", lambda: notified(receiver.bodies("webhook")) == ["Healthy"], timeout=30)
        new = roll_out(kube, namespace, manifest(IMAGES["b"], targets))
        wait_until(
            "the rollout told in order",
            lambda: notified(receiver.bodies("webhook")) == ["Healthy", *ROLLOUT],
            timeout=30,
        )
        wait_until("Slack told twice", lambda: len(receiver.bodies("slack")) == 2, timeout=30)
        wait_until("Teams told once", lambda: len(receiver.bodies("teams")) == 1, timeout=30)

        first, *_, promoted, healthy = receiver.bodies("webhook")
        assert first["schema"] == "modelship.io/notification/v1"
        assert first["modelDeployment"]["name"] == NAME and first["modelDeployment"]["namespace"] == namespace
        assert first["rollout"]["stableRevision"] == stable
        assert promoted["event"]["reason"] == "Promoted" and new in promoted["event"]["message"]
        assert (promoted["rollout"]["stableRevision"], healthy["rollout"]["phase"]) == (new, "Healthy")
        step = receiver.bodies("webhook")[2]
        assert (step["event"]["reason"], step["rollout"]["newRevision"], step["rollout"]["weight"]) == (
            "WeightChanged",
            new,
            50,
        )
        started, slack_promoted = receiver.bodies("slack")
        assert started["text"].startswith(f"RolloutStarted: {namespace}/{NAME}: ")
        assert slack_promoted["blocks"][0]["text"]["text"].startswith(f"*Promoted: {namespace}/{NAME}*")
        (card,) = receiver.bodies("teams")
        assert card["attachments"][0]["content"]["type"] == "AdaptiveCard"

        # Each transition is told once: the Events posted, one notification each.
        events = kube.items(storage.events_path(namespace))
        posted = [
            e["reason"] for e in events if e["reason"] in ("RolloutStarted", "WeightChanged", "Promoted")
        ]
        assert sorted(posted) == ["Promoted", "RolloutStarted", "WeightChanged"]

        wait_until(
            "the condition says delivered", lambda: (condition(kube, namespace) or {}).get("status") == "True"
        )
        wait_until("six counted", lambda: counted(port, "ci", "delivered") == 6, timeout=10)
        assert counted(port, "ci", "failed") == 0
    finally:
        op.stop()
    log = operator_log(op)
    assert "notification Promoted sent to target team" in log
    assert receiver.token not in log
    assert receiver.token not in json.dumps(md_status(kube, namespace, NAME))


def test_a_receiver_answering_500_is_retried_with_backoff_then_counted_and_shown(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    secret(api_client, namespace, "hooks", {"url": receiver.url("fail")})
    targets = [target("failing", "webhook", "url", maxAttempts=3, triggers=["Healthy"])]
    op, port = start_operator(cluster, namespace, tmp_path)
    try:
        deploy_stable(kube, namespace, manifest(IMAGES["a"], targets))
        wait_until("three attempts", lambda: len(receiver.bodies("fail")) == 3, timeout=30)
        first, second, third = receiver.times("fail")
        assert second - first >= 0.9 and third - second >= 1.9  # waits of 1s, then 2s
        assert notified(receiver.bodies("fail")) == ["Healthy"] * 3

        def failed() -> dict[str, Any] | None:
            found = condition(kube, namespace)
            return found if found is not None and found["status"] == "False" else None

        shown = wait_until("the condition says failed", failed, timeout=30)
        assert shown["reason"] == "DeliveryFailed"
        assert shown["message"] == (
            "target failing: Healthy not delivered after 3 attempt(s): HTTP 500 Internal Server Error"
        )
        assert counted(port, "failing", "failed") == 1
        time.sleep(2)
        assert len(receiver.bodies("fail")) == 3  # no more than maxAttempts
        # The ModelDeployment itself is unaffected.
        assert md_status(kube, namespace, NAME)["phase"] == "Healthy"
    finally:
        op.stop()
    log = operator_log(op)
    assert "notification Healthy to target failing: attempt 3/3 failed: HTTP 500" in log
    assert receiver.token not in log


def test_a_hanging_receiver_holds_up_neither_the_rollout_nor_the_other_targets(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    secret(api_client, namespace, "hooks", {"hang": receiver.url("hang"), "ok": receiver.url("ok")})
    targets = [
        target("stuck", "webhook", "hang", timeout="2m", maxAttempts=1),
        target("fine", "webhook", "ok"),
    ]
    op, _ = start_operator(cluster, namespace, tmp_path)
    try:
        deploy_stable(kube, namespace, manifest(IMAGES["a"], targets))
        wait_until("the first notification hangs", lambda: receiver.hanging == 1, timeout=30)
        roll_out(kube, namespace, manifest(IMAGES["b"], targets))
        # Every step was taken and the other target told, while the first request still hangs.
        wait_until(
            "the rollout told to `fine`", lambda: notified(receiver.bodies("ok")) == ["Healthy", *ROLLOUT]
        )
        assert (receiver.hanging, receiver.answered_hang, len(receiver.bodies("hang"))) == (1, 0, 1)
        # Once it answers, the stuck target is told the rest, in order.
        receiver.release.set()
        wait_until(
            "the rest told to `stuck`",
            lambda: notified(receiver.bodies("hang")) == ["Healthy", *ROLLOUT],
            timeout=30,
        )
    finally:
        op.stop()
    assert receiver.token not in operator_log(op)


def test_an_operator_wide_target_is_told_of_every_model_deployment(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    secret(api_client, namespace, "hooks", {"url": receiver.url("ops")})
    defaults = [target("platform", "slack", "url", triggers=["Healthy"])]
    env = {"MODELSHIP_NOTIFICATIONS": json.dumps(defaults), "POD_NAMESPACE": namespace}
    op, port = start_operator(cluster, namespace, tmp_path, env)
    try:
        deploy_stable(kube, namespace, manifest(IMAGES["a"], []))
        wait_until("the operator's target told", lambda: len(receiver.bodies("ops")) == 1, timeout=30)
        (message,) = receiver.bodies("ops")
        assert message["text"].startswith(f"Healthy: {namespace}/{NAME}: ")
        wait_until("counted", lambda: counted(port, "operator/platform", "delivered") == 1)
        assert at(md_status(kube, namespace, NAME), "phase") == "Healthy"
    finally:
        op.stop()
    assert receiver.token not in operator_log(op)


def test_the_api_server_refuses_a_body_for_slack_an_inline_url_and_a_target_without_one(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    body = manifest(IMAGES["a"], [target("chat", "slack", "url", body={"text": "{{trigger}}"})])
    assert "spec.notifications[].body is for type webhook only" in refusal(kube, namespace, body)
    inline = manifest(IMAGES["a"], [{"name": "chat", "type": "slack", "url": "https://hooks.example/x"}])
    assert 'unknown field "spec.notifications[0].url"' in refusal(kube, namespace, inline)
    missing = manifest(IMAGES["a"], [{"name": "chat", "type": "slack"}])
    assert "spec.notifications[0].urlFrom: Required value" in refusal(kube, namespace, missing)


def test_an_operator_killed_around_a_transition_notifies_it_at_most_once(
    kube: Storage,
    namespace: str,
    crd_installed: None,
    cluster: ExistingCluster,
    api_client: client.ApiClient,
    receiver: Receiver,
    tmp_path: Path,
) -> None:
    """Killed after the status write that records RolloutStarted (before its post): the restarted
    operator posts the Event and notifies it, once. Killed right after the post (before the clear):
    the restarted operator's post is AlreadyExists and notifies nothing again (what the killed one
    had queued is lost: at most once)."""
    secret(api_client, namespace, "hooks", {"a": receiver.url("a"), "b": receiver.url("b")})
    arm = tmp_path / "operator.arm"
    op = Operator(
        crashpoint.hook_env(dict(cluster.env), arm), tmp_path / "operator.log", namespaces=[namespace]
    )
    op.start()
    mds = ModelDeployments(kube, namespace)

    def model(name: str, image: str) -> dict[str, Any]:
        doc = manifest(image, [target("hook", "webhook", name[-1])])
        doc["metadata"]["name"] = name
        return doc

    def started(path: str) -> list[dict[str, Any]]:
        return [b for b in receiver.bodies(path) if b["trigger"] == "RolloutStarted"]

    def killed_after(name: str, after: int, image: str) -> dict[str, Any]:
        generation = (mds.get(name) or {})["metadata"]["generation"] + 1
        crashpoint.arm(arm, namespace, name, generation=generation, after=after)
        mds.patch(name, {"image": image})
        result: dict[str, Any] = wait_until("the armed pass", lambda: crashpoint.outcome(arm), timeout=60)
        if result["crashed"]:
            assert op.child is not None
            wait_until("the operator to exit", lambda: not op.child.running, timeout=10)  # type: ignore[union-attr]
            op.start()
        return result

    try:
        for name in ("fraud-a", "fraud-b"):
            mds.deploy_stable(model(name, IMAGES["a"]))
        # The pass that starts a rollout, run to its end: its writes, the Event's post the last but one.
        whole = killed_after("fraud-a", 1000, IMAGES["b"])
        assert not whole["crashed"] and whole["log"][-1].endswith("/status"), whole
        post = max(i for i, w in enumerate(whole["log"], 1) if w.startswith("POST") and "/events" in w)
        assert post == whole["writes"] - 1, whole
        wait_until("fraud-a's rollout told", lambda: len(started("a")) == 1, timeout=30)

        killed = killed_after("fraud-b", post, IMAGES["b"])
        assert killed["crashed"] and killed["writes"] == post, killed
        wait_until(
            "fraud-b promoted",
            lambda: mds.status("fraud-b").get("stableRevision") == revision(model("fraud-b", IMAGES["b"])),
            timeout=90,
        )
        wait_until(
            "fraud-b's promotion told", lambda: "Promoted" in notified(receiver.bodies("b")), timeout=30
        )
        assert len(started("b")) <= 1

        def stable(name: str, image: str) -> bool:
            current = mds.status(name)
            return (
                current.get("stableRevision") == revision(model(name, image))
                and current.get("phase") == "Healthy"
            )

        wait_until("fraud-a promoted", lambda: stable("fraud-a", IMAGES["b"]), timeout=90)
        killed = killed_after("fraud-a", 1, IMAGES["c"])
        assert killed["crashed"] and killed["log"][0].endswith("/status"), killed
        wait_until("fraud-a's second rollout told", lambda: len(started("a")) == 2, timeout=30)
        wait_until("fraud-a promoted again", lambda: stable("fraud-a", IMAGES["c"]), timeout=90)
        wait_until("its promotion told", lambda: notified(receiver.bodies("a")).count("Promoted") == 2)
        assert len(started("a")) == 2
    finally:
        op.stop()
    assert receiver.token not in operator_log(op)
