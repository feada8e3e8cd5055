"""Feedback through any load balancer: a label sent to any replica counts once, for the replica
(and so the revision) that answered. Tokens are checked here as a pure unit and between real
server processes on loopback, which forward to each other as pods do."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver.config import ConfigError, from_env
from modelserver.feedbacktoken import Claim, Signer, TokenError, TokenExpired
from modelserver.sample_models import Bundle

from .serving_helpers import Server, metric_samples

ROW = [100.0, 40.0, 5.0, 0.0]
KEY = "k" * 32
CLAIM = Claim("10.77.0.5:8080", "req-1", 2_000)


def test_a_token_verifies_with_the_key_that_signed_it_and_says_where_it_was_made() -> None:
    token = Signer(KEY.encode()).issue(CLAIM)
    assert Signer(KEY.encode()).verify(token, now=1_999) == CLAIM


def test_a_changed_or_forged_token_is_refused() -> None:
    signer = Signer(KEY.encode())
    token = signer.issue(CLAIM)
    payload, _, mac = token.partition(".")
    elsewhere = signer.issue(Claim("10.77.0.9:8080", "req-1", 2_000)).partition(".")[0]
    other_mac = "A" * len(mac) if not mac.startswith("A") else "B" * len(mac)
    for bad in (f"{payload}.{other_mac}", f"{elsewhere}.{mac}", payload + mac, "", "."):
        with pytest.raises(TokenError, match="signature"):
            signer.verify(bad, now=0)


def test_a_token_signed_with_another_models_key_is_refused() -> None:
    token = Signer(b"x" * 32).issue(CLAIM)
    with pytest.raises(TokenError, match="not issued by this model"):
        Signer(KEY.encode()).verify(token, now=0)


def test_an_expired_token_is_refused_as_expired() -> None:
    token = Signer(KEY.encode()).issue(CLAIM)
    with pytest.raises(TokenExpired):
        Signer(KEY.encode()).verify(token, now=2_000)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        Signer(b"short")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FEEDBACK_KEY": "short"}, "FEEDBACK_KEY must be at least 16"),
        ({"POD_IP": "pod-a"}, "POD_IP='pod-a' must be an IP address"),
        ({"FEEDBACK_TOKEN_TTL_SECONDS": "0"}, "FEEDBACK_TOKEN_TTL_SECONDS=0 must be at least 1"),
    ],
)
def test_bad_token_settings_are_refused_naming_the_variable(
    sklearn_bundle: Bundle, env: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(sklearn_bundle.env() | env)


def test_an_ipv6_pod_address_is_bracketed(sklearn_bundle: Bundle) -> None:
    settings = from_env(sklearn_bundle.env() | {"POD_IP": "fd00::5", "PORT": "9000", "FEEDBACK_KEY": KEY})
    assert settings.pod_address == "[fd00::5]:9000"


@pytest.fixture(scope="module")
def replicas(sklearn_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Server]]:
    """Two replicas of one model sharing a key, each knowing its own address (as pods get POD_IP)."""
    logs = tmp_path_factory.mktemp("replicas")
    servers = []
    try:
        for i in range(2):
            server = Server(sklearn_bundle.env(name="risk") | {"FEEDBACK_KEY": KEY, "POD_IP": "127.0.0.1"})
            servers.append(server.start(logs / f"replica-{i}.log"))
        yield servers
    finally:
        for server in servers:
            server.stop()


def feedback_counted(server: Server) -> float:
    text = server.get("/metrics").body.decode()
    return sum(v for _, v in metric_samples(text, "modelserver_feedback_total"))


def test_feedback_sent_to_another_replica_is_counted_once_by_the_one_that_answered(
    replicas: list[Server],
) -> None:
    answered, other = replicas
    before = (feedback_counted(answered), feedback_counted(other))
    pred = answered.post("/predict", {"instances": [ROW, ROW]}).json()
    token = pred["feedback_token"]
    r = other.post("/feedback", {"token": token, "labels": pred["predictions"]})
    assert r.status == 200, r.body
    assert r.json() == {"request_id": pred["request_id"], "correct": 2, "incorrect": 0}
    assert (feedback_counted(answered), feedback_counted(other)) == (before[0] + 2, before[1])

    # A replay, to either replica, is not counted again.
    for server in replicas:
        again = server.post("/feedback", {"token": token, "labels": pred["predictions"]})
        assert again.status == 404 and again.json()["field"] == "request_id", again.body
    assert feedback_counted(answered) == before[0] + 2


def test_feedback_on_the_replica_that_answered_is_scored_there(replicas: list[Server]) -> None:
    answered = replicas[0]
    pred = answered.post("/predict", {"instances": [ROW]}).json()
    r = answered.post("/feedback", {"token": pred["feedback_token"], "label": "nonsense"})
    assert r.json() == {"request_id": pred["request_id"], "correct": 0, "incorrect": 1}


def test_a_forged_token_is_refused_and_nothing_is_forwarded(replicas: list[Server]) -> None:
    answered, other = replicas
    pred = answered.post("/predict", {"instances": [ROW]}).json()
    forged = Signer(b"f" * 32).issue(Claim(f"127.0.0.1:{answered.port}", pred["request_id"], 4_000_000_000))
    before = feedback_counted(answered)
    r = other.post("/feedback", {"token": forged, "label": pred["predictions"][0]})
    assert r.status == 403 and r.json()["field"] == "token", r.body
    assert feedback_counted(answered) == before
    # The genuine token still works: the forgery did not burn the request.
    assert other.post("/feedback", {"token": pred["feedback_token"], "label": 1}).status == 200


def test_forwarded_feedback_is_never_forwarded_again(replicas: list[Server]) -> None:
    answered, other = replicas
    pred = answered.post("/predict", {"instances": [ROW]}).json()
    r = other.post(
        "/feedback",
        {"token": pred["feedback_token"], "label": 1},
        headers={"x-modelserver-forwarded": "1"},
    )
    assert r.status == 421 and r.json()["field"] == "token", r.body


def test_feedback_for_a_replica_that_is_gone_says_so(sklearn_bundle: Bundle, tmp_path: Path) -> None:
    env = sklearn_bundle.env(name="risk") | {"FEEDBACK_KEY": KEY, "POD_IP": "127.0.0.1"}
    gone, alive = Server(env).start(tmp_path / "gone.log"), Server(env).start(tmp_path / "alive.log")
    try:
        pred = gone.post("/predict", {"instances": [ROW]}).json()
        gone.stop()
        r = alive.post("/feedback", {"token": pred["feedback_token"], "label": 1})
        assert r.status == 410 and "cannot be reached" in r.json()["error"], r.body
    finally:
        alive.stop()
