"""Shadow traffic from a stable pod: which requests are copied, how answers are compared, and that
a slow or absent candidate costs the user nothing. The pure parts as units; the rest between real
server processes on loopback, one copying to the other as a stable pod copies to `<name>-canary`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from modelserver import sample_models, shadow
from modelserver.config import ConfigError, from_env
from modelserver.sample_models import Bundle

from .serving_helpers import Server, free_port, metric_samples

ROW = [100.0, 40.0, 5.0, 0.0]
ON = {"x-modelship-shadow-percent": "100", "x-modelship-shadow-revision": "risk-cand01"}


@pytest.mark.unit
@pytest.mark.parametrize(
    ("percent", "revision", "draw", "copied"),
    [
        (b"50", b"risk-cand01", 0.49, "risk-cand01"),
        (b"50", b"risk-cand01", 0.5, None),
        (b"0", b"risk-cand01", 0.0, None),
        (b"100", b"risk-cand01", 0.999, "risk-cand01"),
        (None, b"risk-cand01", 0.0, None),  # no percent: the gateway did not ask
        (b"100", None, 0.0, None),
        (b"lots", b"risk-cand01", 0.0, None),
        (b"100", b'x"} or vector(1) #', 0.0, None),  # a revision becomes a metric label: DNS labels only
        (b"100", b"Risk", 0.0, None),
    ],
)
def test_a_request_is_copied_when_the_draw_falls_under_the_percent_the_gateway_set(
    percent: bytes | None, revision: bytes | None, draw: float, copied: str | None
) -> None:
    assert shadow.wanted(percent, revision, draw, own="risk-stable1") == copied


@pytest.mark.unit
def test_a_pod_of_the_candidate_never_copies_to_itself() -> None:
    assert shadow.wanted(b"100", b"risk-cand01", 0.0, own="risk-cand01") is None


@pytest.mark.unit
def test_a_classifiers_answers_are_compared_by_label_and_confidence() -> None:
    ours = {"predictions": ["a", "b", "a", 1], "confidence": [0.9, 0.8, 0.7, 0.6]}
    theirs = {"predictions": ["a", "a", "a", 1.0], "confidence": [0.8, 0.8, 0.9, 0.6]}
    found = shadow.compare(ours, theirs)
    assert found is not None
    assert (found.rows, found.agreements, found.confidence_rows) == (4, 3, 4)
    assert found.stable_confidence == pytest.approx(3.0)
    assert found.candidate_confidence == pytest.approx(3.1)


@pytest.mark.unit
def test_a_regressors_answers_are_compared_by_absolute_difference() -> None:
    found = shadow.compare({"predictions": [1.0, 2.5, -1.0]}, {"predictions": [1.0, 2.0, 1.0]})
    assert found is not None
    assert (found.rows, found.agreements, found.confidence_rows) == (3, 1, 0)
    assert found.abs_difference == pytest.approx(2.5)


@pytest.mark.unit
@pytest.mark.parametrize(
    "theirs", [{"predictions": [1]}, {"error": "bad"}, ["a", "b"], {"predictions": "ab"}, None]
)
def test_an_answer_to_other_rows_is_no_comparison(theirs: object) -> None:
    assert shadow.compare({"predictions": ["a", "b"]}, theirs) is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("canary", "SHADOW_TARGET='canary' must be host:port"),
        ("canary:http", "must be host:port"),
        ("http://canary:80", "must be host:port"),
        (":80", "must be host:port"),
        ("canary:70000", "must be host:port"),
        ("$(RISK_CANARY_SERVICE_HOST):80", "must be host:port"),  # nothing expanded, nothing else
    ],
)
def test_a_bad_shadow_target_is_refused_naming_the_variable(
    sklearn_bundle: Bundle, value: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        from_env(sklearn_bundle.env() | {"SHADOW_TARGET": value})


@pytest.mark.unit
def test_the_first_shadow_target_whose_variable_was_expanded_is_used(sklearn_bundle: Bundle) -> None:
    both = "$(RISK_CANARY_SERVICE_HOST):80,risk-canary:80"
    assert from_env(sklearn_bundle.env() | {"SHADOW_TARGET": both}).shadow.target == ("risk-canary", 80)
    expanded = "10.96.0.12:80,risk-canary:80"
    assert from_env(sklearn_bundle.env() | {"SHADOW_TARGET": expanded}).shadow.target == ("10.96.0.12", 80)


@pytest.mark.unit
def test_the_queue_is_bounded_and_a_copy_beyond_it_is_dropped_and_counted() -> None:
    """A candidate that accepts connections and never answers: the workers hold one copy each,
    the queue holds its capacity, every copy beyond is dropped at once; held ones time out."""
    recorded: list[str] = []

    async def run() -> float:
        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(30)

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        mirror = shadow.Mirror(
            ("127.0.0.1", port),
            lambda revision, result, comparison: recorded.append(result),
            capacity=3,
            workers=2,
            timeout_s=0.3,
        )
        start = time.perf_counter()
        mirror.offer("cand", b"{}", b"{}")
        mirror.offer("cand", b"{}", b"{}")
        await asyncio.sleep(0.05)  # both workers took one
        for _ in range(8):
            mirror.offer("cand", b"{}", b"{}")
        offered = time.perf_counter() - start
        await asyncio.sleep(1.0)  # 5 held copies, 2 at a time, 0.3 s each
        await mirror.close()
        server.close()
        return offered

    offered = asyncio.run(run())
    assert offered < 0.2  # offering never waits
    assert recorded.count("dropped") == 5  # 2 in flight + 3 queued; 5 of the 8 had no room
    assert recorded.count("failed") == 5


def shadow_counts(server: Server) -> dict[str, float]:
    """modelserver_shadow_* totals of one pod: requests by result, then the comparison sums."""
    text = server.get("/metrics").body.decode()
    counts = {
        labels["result"]: value for labels, value in metric_samples(text, "modelserver_shadow_requests_total")
    }
    for name in ("rows", "agreements", "abs_difference", "confidence_rows"):
        counts[name] = sum(v for _, v in metric_samples(text, f"modelserver_shadow_{name}_total"))
    for labels, value in metric_samples(text, "modelserver_shadow_confidence_total"):
        counts[f"confidence_{labels['answer']}"] = value
    return counts


def predicted(server: Server) -> float:
    text = server.get("/metrics").body.decode()
    return sum(
        v
        for labels, v in metric_samples(text, "modelserver_requests_total")
        if labels["route"] == "/predict" and labels["code"] == "200"
    )


def settle(server: Server, wanted: float, key: str = "compared") -> dict[str, float]:
    """The counts once `key` reached `wanted` (copies are sent after the answers, a moment later)."""
    deadline = time.monotonic() + 10
    counts = shadow_counts(server)
    while counts.get(key, 0) < wanted and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = shadow_counts(server)
    return counts


@pytest.fixture(scope="module")
def pair(sklearn_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Server]]:
    """A stable pod copying to a candidate serving the same model."""
    logs = tmp_path_factory.mktemp("shadow")
    candidate = Server(sklearn_bundle.env(name="risk", version="2")).start(logs / "candidate.log")
    stable = Server(sklearn_bundle.env(name="risk") | {"SHADOW_TARGET": f"127.0.0.1:{candidate.port}"})
    try:
        stable.start(logs / "stable.log")
        yield stable, candidate
    finally:
        stable.stop()
        candidate.stop()


def test_a_marked_request_is_copied_to_the_candidate_and_an_identical_model_agrees_on_every_row(
    pair: tuple[Server, Server],
) -> None:
    stable, candidate = pair
    before, served = shadow_counts(stable), predicted(candidate)
    for _ in range(20):
        reply = stable.post("/predict", {"instances": [ROW, [0.0, 0.0, 0.0, 1.0]]}, ON)
        assert reply.status == 200
        assert reply.json()["model"]["version"] == "1"  # the user sees the stable answer
    after = settle(stable, before.get("compared", 0) + 20)
    assert after["compared"] - before.get("compared", 0) == 20
    rows = after["rows"] - before.get("rows", 0)
    assert rows == 40
    assert after["agreements"] - before.get("agreements", 0) == rows
    assert after["confidence_candidate"] - after["confidence_stable"] == pytest.approx(
        before.get("confidence_candidate", 0) - before.get("confidence_stable", 0)
    )
    # The copies are the candidate's own requests, counted as its traffic (its revision's metrics).
    assert predicted(candidate) - served == 20


def test_half_of_the_requests_are_copied_at_50_percent_and_none_without_the_headers(
    pair: tuple[Server, Server],
) -> None:
    stable, candidate = pair
    served = predicted(candidate)
    for _ in range(30):
        stable.post("/predict", {"instances": [ROW]})  # no headers: no shadow asked
    time.sleep(0.3)
    assert predicted(candidate) == served
    half = {**ON, "x-modelship-shadow-percent": "50"}
    for _ in range(200):
        stable.post("/predict", {"instances": [ROW]}, half)
    time.sleep(0.5)
    copies = predicted(candidate) - served
    assert 70 <= copies <= 130  # binomial(200, 0.5): outside this once in ~10^4 runs


def test_a_different_model_disagrees_on_some_rows(
    sklearn_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory
) -> None:
    logs = tmp_path_factory.mktemp("shadow-diff")
    other = sample_models.sklearn_bundle(logs / "model", seed=3)
    candidate = Server(other.env(name="risk", version="3")).start(logs / "candidate.log")
    stable = Server(sklearn_bundle.env(name="risk") | {"SHADOW_TARGET": f"127.0.0.1:{candidate.port}"})
    try:
        stable.start(logs / "stable.log")
        rows = [[float(i % 7) * 20, float(i % 5) * 10, float(i % 3), float(i % 2)] for i in range(60)]
        stable.post("/predict", {"instances": rows}, ON)
        counts = settle(stable, 1)
    finally:
        stable.stop()
        candidate.stop()
    assert counts["rows"] == 60
    assert counts["agreements"] < 60


@pytest.mark.parametrize("slow", [True, False], ids=["slow candidate", "no candidate"])
def test_a_slow_or_absent_candidate_neither_slows_nor_fails_users_and_is_counted(
    sklearn_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory, slow: bool
) -> None:
    logs = tmp_path_factory.mktemp("shadow-slow")
    candidate = None
    if slow:
        fault = {"MODELSERVER_FAULT_LATENCY": "2"}
        candidate = Server(sklearn_bundle.env(name="risk", version="2") | fault).start(logs / "cand.log")
    port = candidate.port if candidate is not None else free_port()  # nothing listens there
    shadowing = {
        "SHADOW_TARGET": f"127.0.0.1:{port}",
        "SHADOW_QUEUE": "4",
        "SHADOW_WORKERS": "1",
        "SHADOW_TIMEOUT_MS": "300",
    }
    stable = Server(sklearn_bundle.env(name="risk") | shadowing)
    try:
        stable.start(logs / "stable.log")
        took = []
        for _ in range(40):
            start = time.perf_counter()
            reply = stable.post("/predict", {"instances": [ROW]}, ON)
            took.append(time.perf_counter() - start)
            assert reply.status == 200
        counts = settle(stable, 1 if slow else 40, "dropped" if slow else "failed")
    finally:
        stable.stop()
        if candidate is not None:
            candidate.stop()
    assert max(took) < 0.25  # a copy's 300 ms timeout (and the candidate's 2 s) never reach the user
    if slow:
        assert counts.get("dropped", 0) > 0  # 40 copies, one worker, 300 ms each: most find no room
        assert counts.get("compared", 0) == 0
    else:
        assert counts.get("failed", 0) + counts.get("dropped", 0) == 40
