"""The load generator: pacing, bounds, the mix, the summary; one run against a stdlib HTTP server."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from loadgen import mix
from loadgen.engine import Load, Sample, check_loopback, due, feedback_due, feedback_key, total_requests
from loadgen.summary import Summary, percentile

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]


def test_request_i_is_due_at_i_over_rate() -> None:
    assert [due(i, 20) for i in range(3)] == [0.0, 0.05, 0.1]


def test_a_run_is_rate_times_duration_capped_by_count() -> None:
    assert total_requests(20, 30) == 600
    assert total_requests(20, 30, count=100) == 100
    assert total_requests(0.5, 3) == 1
    assert total_requests(10, 0.3) == 3  # no float rounding down to 2


@pytest.mark.parametrize(
    ("rate", "duration", "count"), [(0, 1, None), (1, 0, None), (1, float("inf"), None), (1, 1, -1)]
)
def test_bad_bounds_are_refused(rate: float, duration: float, count: int | None) -> None:
    with pytest.raises(ValueError, match=r"rate|duration|count"):
        total_requests(rate, duration, count)


@pytest.mark.parametrize("ratio", [0.0, 0.1, 0.25, 1 / 3, 0.5, 1.0])
def test_feedback_goes_with_exactly_the_ratio_evenly_spread(ratio: float) -> None:
    sent = [i for i in range(300) if feedback_due(i, ratio)]
    assert len(sent) == int(300 * ratio + 1e-9)
    assert sum(1 for i in range(100) if feedback_due(i, ratio)) == int(100 * ratio + 1e-9)


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1/predict", "http://localhost:80/", "https://127.0.0.1/", "127.0.0.1:80"]
)
def test_only_http_to_loopback_addresses(url: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|http://"):
        check_loopback(url)
    assert check_loopback("http://127.3.0.9:8080/predict").port == 8080


def test_nearest_rank_percentiles() -> None:
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([], 50) is None


def test_summary_lines_say_codes_latency_feedback_and_accuracy() -> None:
    summary = Summary(
        elapsed=10.0,
        codes=Counter({200: 190, 500: 9, 0: 1}),
        p50=0.0031,
        p99=0.0125,
        feedback_sent=95,
        feedback_codes=Counter({200: 94, 404: 1}),
        correct=85,
        incorrect=9,
    )
    assert summary.requests == 200 and summary.errors == 10
    assert summary.lines() == [
        "requests: 200 in 10.0s (20.0/s)  no answer: 1  200: 190  500: 9",
        "latency: p50 3.1 ms  p99 12.5 ms",
        "feedback: 95 sent, 94 accepted; observed accuracy 0.904 (85/94 rows)",
    ]
    assert json.loads(json.dumps(summary.as_json()))["codes"] == {"0": 1, "200": 190, "500": 9}


def test_mix_repeats_examples_by_weight_and_keeps_labels() -> None:
    samples = mix.parse(
        [{"instances": [[1, 2]], "labels": ["a"], "weight": 3}, {"instances": [[3, 4], [5, 6]]}]
    )
    assert len(samples) == 4
    assert Counter(s.body for s in samples) == {
        b'{"instances": [[1, 2]]}': 3,
        b'{"instances": [[3, 4], [5, 6]]}': 1,
    }
    assert {tuple(s.labels or []) for s in samples} == {("a",), ()}


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([], "must be a non-empty JSON array"),
        ([3], r"inputs\[0\] must be an object"),
        ([{"instances": []}], r"inputs\[0\].instances must be a non-empty array"),
        ([{"instances": [[1]], "labels": ["a", "b"]}], r"inputs\[0\].labels must be an array with one label"),
        ([{"instances": [[1]], "weight": 0}], r"inputs\[0\].weight must be an integer"),
        ([{"instances": [[1]], "label": "a"}], r"inputs\[0\].label is not a known field"),
    ],
)
def test_bad_inputs_files_name_the_place(doc: object, message: str) -> None:
    with pytest.raises(mix.MixError, match=message):
        mix.parse(doc)


def test_holdout_samples_carry_their_true_labels() -> None:
    samples = mix.holdout_samples()
    assert len(samples) == 1000
    assert all(s.labels is not None and len(s.labels) == 1 for s in samples)
    assert len(json.loads(samples[0].body)["instances"][0]) == 4


class _Fake(BaseHTTPRequestHandler):
    """Predicts label "a" for everything; scores feedback against it; counts what it got."""

    protocol_version = "HTTP/1.1"
    seen: ClassVar[Counter[str]] = Counter()
    ids: ClassVar[set[str]] = set()
    tokens: ClassVar[bool] = False  # answer with a feedback_token, and take only tokens

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/predict":
            rid = self.headers["X-Request-Id"]
            self.ids.add(rid)
            reply = {"request_id": rid, "predictions": ["a"] * len(body["instances"])}
            if self.tokens:
                reply["feedback_token"] = f"token-{rid}"
        else:
            named = body["token"].removeprefix("token-") if self.tokens else body["request_id"]
            assert named in self.ids
            correct = sum(label == "a" for label in body["labels"])
            reply = {"correct": correct, "incorrect": len(body["labels"]) - correct}
        self.seen[self.path] += 1
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake() -> Iterator[str]:
    _Fake.seen.clear()
    _Fake.ids.clear()
    _Fake.tokens = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Fake)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    server.shutdown()
    server.server_close()


def test_a_run_sends_its_count_and_feedback_for_its_share(fake: str) -> None:
    samples = [Sample(b'{"instances": [[1]]}', ["a"]), Sample(b'{"instances": [[2]]}', ["b"])]
    summary = Load(fake, samples, rate=100, duration=1, feedback_ratio=0.5).start().wait()
    assert summary.codes == {200: 100}
    assert summary.feedback_sent == 50 and summary.feedback_codes == {200: 50}
    assert _Fake.seen == {"/predict": 100, "/feedback": 50}
    # Feedback goes with every other request (the odd ones): the "b" sample, which the fake gets wrong.
    assert (summary.correct, summary.incorrect) == (0, 50)
    assert summary.p50 is not None and summary.p99 is not None


def test_feedback_sends_the_answers_token_when_it_has_one_else_the_request_id() -> None:
    assert feedback_key(b'{"request_id": "r1", "feedback_token": "t1"}', "r1") == {"token": "t1"}
    assert feedback_key(b'{"request_id": "r1"}', "r1") == {"request_id": "r1"}
    assert feedback_key(b"not json", "r1") == {"request_id": "r1"}
    assert feedback_key(b'["a list"]', "r1") == {"request_id": "r1"}


def test_a_run_against_a_token_issuing_server_sends_its_tokens(fake: str) -> None:
    _Fake.tokens = True
    samples = [Sample(b'{"instances": [[1]]}', ["a"])]
    summary = Load(fake, samples, rate=100, duration=0.5, feedback_ratio=1).start().wait()
    assert summary.feedback_codes == {200: 50} and summary.correct == 50


def test_a_background_run_stops_when_asked(fake: str) -> None:
    load = Load(fake, [Sample(b'{"instances": [[1]]}')], rate=50, duration=60).start()
    threading.Event().wait(0.5)
    assert load.running
    summary = load.stop()
    assert not load.running
    assert 10 <= summary.requests <= 40  # about 25 sent in half a second, then nothing more


def test_cli_prints_a_summary_and_refuses_non_loopback(fake: str, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps([{"instances": [[1]], "labels": ["a"]}]))
    cmd = [sys.executable, "-m", "loadgen", "--url", fake, "--rate", "50", "--duration", "0.4"]
    env = {"PYTHONPATH": str(REPO / "hack"), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [*cmd, "--inputs", str(inputs), "--feedback-ratio", "1", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert (result["requests"], result["feedback_sent"], result["accuracy"]) == (20, 20, 1.0)
    refused = subprocess.run(
        [sys.executable, "-m", "loadgen", "--url", "http://192.0.2.1/predict"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2
    assert "loopback" in refused.stderr
