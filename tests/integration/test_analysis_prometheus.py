"""The Prometheus adapter and the builtin templates against Debian's real Prometheus.

Prometheus scrapes a loopback exporter that serves the metrics contract's names for two revisions
of one ModelDeployment, advancing the counters by the same amounts on every scrape, so every
template has one exact expected value per revision. A second Prometheus serves TLS with basic
auth (its --web.config.file); the bearer token is checked by a loopback server that records the
header, since Prometheus itself cannot check tokens.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devcluster import procs
from devcluster.cluster import free_port, terminate, wait_for
from localworld import prometheus as localprom
from modelship.analysis.measure import ScrapeReader
from modelship.analysis.prometheus import Prometheus, PrometheusConfig, QueryError, Unreachable
from modelship.core.analysis.templates import requests_query, tally_queries, tally_rule, template_query

pytestmark = pytest.mark.integration

NAMESPACE, NAME = "ml", "fraud"
WINDOW = "10s"
SCRAPE_SECONDS = 1
# Counters start as if this many scrapes had happened: every series of a revision then has the same
# first/increment ratio, so rate() extrapolates them alike and the ratios below are exact.
BASE = 1000

# Per scrape and revision: (route, code) -> requests. "a" fails 2% of model requests, all on the V2
# route (so the route regex must include it); /healthz 5xx are not model traffic. "b" fails 30%.
REQUESTS = {
    "fraud-a": {("/predict", "200"): 50, ("/v2/models/{name}/infer", "200"): 48,
                ("/v2/models/{name}/infer", "500"): 2, ("/healthz", "503"): 40},
    "fraud-b": {("/predict", "200"): 140, ("/predict", "500"): 60},
}  # fmt: skip
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0)
# Per scrape: upper bound -> observations falling in that bucket (non-cumulative), /predict only.
# No quantile's rank may end a bucket that an empty bucket follows: rank and bucket counts are
# separately rounded rates, so the rank can land a rounding error past the boundary, and
# histogram_quantile then skips the empty bucket (this made p95 flaky in CI).
LATENCY = {"fraud-a": {0.01: 50, 0.025: 46, 0.1: 4}, "fraud-b": {0.5: 100}}
FEEDBACK = {"fraud-a": {"correct": 9, "incorrect": 1}, "fraud-b": {"correct": 6, "incorrect": 4}}
CONFIDENCE = {"fraud-a": (85, 100), "fraud-b": (50, 100)}  # (sum, count) per scrape

EXPECTED = {
    "fraud-a": {
        "error-rate": 0.02,
        # histogram_quantile interpolates linearly inside the bucket holding the rank.
        "latency-p50": 0.01,  # rank 50 ends the (0.005, 0.01] bucket; the next one is not empty
        "latency-p95": 0.01 + 0.015 * (95 - 50) / 46,
        "latency-p99": 0.05 + 0.05 * (99 - 96) / 4,
        "accuracy": 0.9,
        "confidence-mean": 0.85,
    },
    "fraud-b": {
        "error-rate": 0.3,
        "latency-p50": 0.375,
        "latency-p95": 0.25 + 0.25 * 0.95,
        "latency-p99": 0.25 + 0.25 * 0.99,
        "accuracy": 0.6,
        "confidence-mean": 0.5,
    },
}


def exposition(n: int) -> str:
    """The exporter's text after `n` scrapes."""
    k = BASE + n
    lines = ["# TYPE modelserver_requests_total counter"]
    for rev, by_route in REQUESTS.items():
        sel = f'namespace="{NAMESPACE}",revision="{rev}",model_name="fraud",model_version="1"'
        for (route, code), per in by_route.items():
            lines.append(
                f'modelserver_requests_total{{{sel},route="{route}",method="POST",code="{code}"}} {per * k}'
            )
    lines.append("# TYPE modelserver_request_duration_seconds histogram")
    for rev, buckets in LATENCY.items():
        sel = f'namespace="{NAMESPACE}",revision="{rev}",route="/predict"'
        total = 0
        for le in DURATION_BUCKETS:
            total += buckets.get(le, 0)
            lines.append(f'modelserver_request_duration_seconds_bucket{{{sel},le="{le}"}} {total * k}')
        lines.append(f'modelserver_request_duration_seconds_bucket{{{sel},le="+Inf"}} {total * k}')
        lines.append(f"modelserver_request_duration_seconds_count{{{sel}}} {total * k}")
        lines.append(f"modelserver_request_duration_seconds_sum{{{sel}}} {total * k * 0.1}")
        # Slow health checks on another route must not move the model latency.
        slow = f'namespace="{NAMESPACE}",revision="{rev}",route="/healthz"'
        lines.append(f'modelserver_request_duration_seconds_bucket{{{slow},le="10.0"}} {100 * k}')
        lines.append(f'modelserver_request_duration_seconds_bucket{{{slow},le="+Inf"}} {100 * k}')
    lines.append("# TYPE modelserver_feedback_total counter")
    for rev, outcomes in FEEDBACK.items():
        for outcome, per in outcomes.items():
            lines.append(
                f'modelserver_feedback_total{{namespace="{NAMESPACE}",revision="{rev}",outcome="{outcome}"}} '
                f"{per * k}"
            )
    lines.append("# TYPE modelserver_prediction_confidence histogram")
    for rev, (total, count) in CONFIDENCE.items():
        sel = f'namespace="{NAMESPACE}",revision="{rev}"'
        lines.append(f'modelserver_prediction_confidence_bucket{{{sel},le="+Inf"}} {count * k}')
        lines.append(f"modelserver_prediction_confidence_sum{{{sel}}} {total * k}")
        lines.append(f"modelserver_prediction_confidence_count{{{sel}}} {count * k}")
    return "\n".join(lines) + "\n"


def scrape_target(exposition: Callable[[int], str]) -> type[BaseHTTPRequestHandler]:
    """A scrape target whose n-th scrape answers `exposition(n)`: counters that grow by scrape."""

    class Exporter(BaseHTTPRequestHandler):
        scrapes = 0
        lock = threading.Lock()

        def do_GET(self) -> None:
            with self.lock:
                type(self).scrapes += 1
                body = exposition(type(self).scrapes).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: Any) -> None:
            pass

    return Exporter


def serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A loopback HTTP server with `handler` for the module's tests: its host:port."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def exporter() -> Iterator[str]:
    yield from serve(scrape_target(exposition))


@dataclass
class PromProcess:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self) -> None:
        terminate(self.process)


def start_prometheus(
    state: Path,
    config: dict[str, Any],
    web_config: dict[str, Any] | None = None,
    ready_context: ssl.SSLContext | None = None,
    ready_headers: dict[str, str] | None = None,
) -> PromProcess:
    """Debian's Prometheus on a free loopback port (localworld.prometheus finds the binary)."""
    state.mkdir(parents=True, exist_ok=True)
    (state / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        localprom.binary(),
        f"--config.file={state / 'prometheus.yml'}",
        f"--storage.tsdb.path={state / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    if web_config is not None:
        (state / "web.yml").write_text(yaml.safe_dump(web_config))
        args.append(f"--web.config.file={state / 'web.yml'}")
    log = state / "prometheus.log"
    with log.open("ab") as out:
        process = procs.popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    scheme = "https" if web_config and "tls_server_config" in web_config else "http"
    prom = PromProcess(process, f"{scheme}://127.0.0.1:{port}", log)

    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"prometheus exited ({process.returncode}): {log.read_text()[-2000:]}")
        request = urllib.request.Request(f"{prom.url}/-/ready", headers=ready_headers or {})
        try:
            with urllib.request.urlopen(request, timeout=1, context=ready_context) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_for(f"prometheus ready (log {log})", ready, timeout=60)
    except BaseException:
        prom.stop()
        raise
    return prom


class _Idle(BaseHTTPRequestHandler):
    """A target with no metrics of its own: what a pod of revision TARGET_REVISION looks like to
    Prometheus' target metadata (its labels come from the scrape config, as relabelling sets them)."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *_: Any) -> None:
        pass


TARGET_REVISION = "fraud-t"


@pytest.fixture(scope="module")
def idle_target() -> Iterator[str]:
    yield from serve(_Idle)


@pytest.fixture(scope="module")
def prom_url(exporter: str, idle_target: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    labels = {"namespace": NAMESPACE, "revision": TARGET_REVISION}
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{SCRAPE_SECONDS}s"},
        # honor_labels: the exporter's namespace/revision labels stand in for the scrape config's.
        "scrape_configs": [
            {"job_name": "serving", "honor_labels": True, "static_configs": [{"targets": [exporter]}]},
            {"job_name": "pods", "static_configs": [{"targets": [idle_target], "labels": labels}]},
        ],
    }
    prom = start_prometheus(tmp_path_factory.mktemp("prometheus"), config)
    try:
        client = Prometheus(PrometheusConfig(address=prom.url))
        # Enough samples in the window for every rate(): a few scrapes.
        wait_for(
            "five scrapes of the exporter",
            lambda: (client.query('count_over_time(modelserver_feedback_total{outcome="correct",'
                                  f'revision="fraud-a"}}[{WINDOW}])') or 0) >= 5,
            timeout=60,
        )  # fmt: skip
        client.close()
        yield prom.url
    finally:
        prom.stop()


@pytest.fixture
def prom(prom_url: str) -> Iterator[Prometheus]:
    client = Prometheus(PrometheusConfig(address=prom_url, timeout_seconds=5))
    yield client
    client.close()


@pytest.mark.parametrize("revision", sorted(EXPECTED))
@pytest.mark.parametrize("template", sorted(EXPECTED["fraud-a"]))
def test_each_builtin_template_measures_its_revision(prom: Prometheus, template: str, revision: str) -> None:
    query = template_query(template, namespace=NAMESPACE, name=NAME, revision=revision, window=WINDOW)
    assert prom.query(query) == pytest.approx(EXPECTED[revision][template], rel=1e-6)


def test_requests_query_counts_the_model_requests_of_each_revision(prom: Prometheus) -> None:
    a, b = (
        requests_query(namespace=NAMESPACE, name=NAME, revision=r, window=WINDOW)
        for r in ("fraud-a", "fraud-b")
    )
    # Each comparison is one PromQL expression, so both sides see the same samples.
    every_route = (
        f'sum(increase(modelserver_requests_total{{namespace="{NAMESPACE}", revision="fraud-a"}}[{WINDOW}]))'
    )
    assert prom.query(f"({a}) / {every_route}") == pytest.approx(100 / 140, rel=1e-9)  # not /healthz
    assert prom.query(f"({b}) / ({a})") == pytest.approx(2, rel=1e-9)
    # About 100 per scrape: increase() extrapolates past the first and last sample by up to 1.1
    # intervals each, so between 100 and 100 * (n + 1.2) / (n - 1) per interval with n >= 5 samples.
    scrapes = (
        f'count_over_time(modelserver_feedback_total{{revision="fraud-a", outcome="correct"}}[{WINDOW}])'
    )
    per_interval = prom.query(f"({a}) / scalar({scrapes} - 1)")
    assert per_interval is not None and 100 <= per_interval <= 155


@pytest.mark.parametrize(
    ("template", "revision", "max_", "min_", "rate"),
    [
        ("error-rate", "fraud-a", 0.05, None, 0.02),
        ("error-rate", "fraud-b", 0.05, None, 0.3),
        ("accuracy", "fraud-b", None, 0.6, 0.6),
        ("latency-p99", "fraud-b", 0.25, None, 1.0),  # every request in the (0.25, 0.5] bucket
        ("latency-p99", "fraud-a", 0.25, None, 0.0),  # none slower than 0.1
        # No 0.3 bucket: counted above 0.5, the next one up, where none are: a tally may undercount
        # the slow requests (never fail a canary it should not), never overcount them.
        ("latency-p95", "fraud-b", 0.3, None, 0.0),
    ],
)
def test_a_rate_templates_tally_counts_its_events_of_its_requests(
    prom: Prometheus, template: str, revision: str, max_: float | None, min_: float | None, rate: float
) -> None:
    rule = tally_rule(template, max_, min_)
    assert rule is not None
    events, requests = tally_queries(rule, namespace=NAMESPACE, name=NAME, revision=revision, window=WINDOW)
    # One query, so both sides see the same samples.
    assert prom.query(f"({events}) / ({requests})") == pytest.approx(rate, abs=1e-9)
    counted = prom.query(requests)
    assert counted is not None and counted > 0


def test_the_scrape_reader_finds_a_revisions_interval_and_last_scrape(prom_url: str) -> None:
    reader = ScrapeReader(time.monotonic)
    config = PrometheusConfig(address=prom_url)
    scrape = reader.read(config, NAMESPACE, TARGET_REVISION)
    assert scrape is not None and scrape.interval == dt.timedelta(seconds=SCRAPE_SECONDS)
    now = dt.datetime.now(dt.UTC)
    assert scrape.last is not None and now - dt.timedelta(seconds=5) < scrape.last <= now
    assert scrape.last.microsecond != 0 or scrape.duration > dt.timedelta(0)  # sub-second timing kept
    assert reader.read(config, NAMESPACE, "fraud-unknown") is None
    assert reader.read(config, "other-namespace", TARGET_REVISION) is None
    assert reader.read(PrometheusConfig(address=f"http://127.0.0.1:{free_port()}"), NAMESPACE, "x") is None


def test_a_revision_prometheus_never_saw_gives_no_data(prom: Prometheus) -> None:
    for template in EXPECTED["fraud-a"]:
        query = template_query(template, namespace=NAMESPACE, name=NAME, revision="fraud-zzz", window=WINDOW)
        assert prom.query(query) is None, template
    assert (
        prom.query(requests_query(namespace=NAMESPACE, name=NAME, revision="fraud-zzz", window="1m")) is None
    )


def test_the_same_revision_in_another_namespace_is_not_measured(prom: Prometheus) -> None:
    query = template_query("error-rate", namespace="staging", name=NAME, revision="fraud-b", window=WINDOW)
    assert prom.query(query) is None


def test_nan_is_no_data_and_a_scalar_is_a_number(prom: Prometheus) -> None:
    assert prom.query("vector(0) / vector(0)") is None
    assert prom.query("scalar(vector(2.5))") == 2.5
    assert prom.query("1 / 0") == float("inf")


def test_several_series_are_refused_with_advice(prom: Prometheus) -> None:
    with pytest.raises(
        QueryError, match=r"query returned 2 series \(.*revision=\"fraud-a\".*aggregate it to one"
    ):
        prom.query('sum by (revision) (modelserver_feedback_total{outcome="correct"})')


def test_a_range_vector_is_refused(prom: Prometheus) -> None:
    with pytest.raises(QueryError, match="range vector"):
        prom.query('sum(modelserver_feedback_total{outcome="correct"})[10s:1s]')


def test_a_syntax_error_carries_prometheus_message(prom: Prometheus, prom_url: str) -> None:
    with pytest.raises(
        QueryError, match=rf"Prometheus at {prom_url} answered HTTP 400 Bad Request: .*parse error"
    ) as raised:
        prom.query("sum(rate(x[1m])")
    assert not raised.value.unreachable  # Prometheus answered: an Error verdict, not Inconclusive


def test_an_address_with_nothing_listening_is_unreachable() -> None:
    address = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(Unreachable, match=rf"Prometheus at {address} is unreachable: \[Errno 111\]"):
        Prometheus(PrometheusConfig(address=address, timeout_seconds=1)).query("1")


def test_a_stopped_prometheus_is_unreachable(exporter: str, tmp_path: Path) -> None:
    config = {"scrape_configs": [{"job_name": "x", "static_configs": [{"targets": [exporter]}]}]}
    prom = start_prometheus(tmp_path / "stopped", config)
    client = Prometheus(PrometheusConfig(address=prom.url, timeout_seconds=1))
    assert client.query("vector(1)") == 1.0
    prom.stop()
    with pytest.raises(Unreachable, match="is unreachable"):
        client.query("vector(1)")


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_times_out_after_the_timeout() -> None:
    # Accepts connections (the kernel's backlog) but never reads or answers.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = Prometheus(PrometheusConfig(address=address, timeout_seconds=0.5))
        with pytest.raises(Unreachable, match=rf"Prometheus at {address} did not answer within 0.5s"):
            client.query("1")


class _NotPrometheus(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", "13")
        self.end_headers()
        self.wfile.write(b"<html></html>")

    def log_message(self, *_: Any) -> None:
        pass


def test_a_server_that_is_not_prometheus_is_named() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotPrometheus)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(QueryError, match="did not answer like a Prometheus query API"):
            Prometheus(PrometheusConfig(address=address)).query("1")
    finally:
        server.shutdown()
        server.server_close()


# Authentication and TLS.


def _cert(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None, issuer_key: Any
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
    )
    if issuer is None:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class SecurePrometheus:
    url: str
    ca_pem: str


USER, PASSWORD = "modelship", "correct horse"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePrometheus]:
    state = tmp_path_factory.mktemp("secure-prometheus")
    ca_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _cert("modelship test CA", ca_key, None, ca_key)
    server = _cert("127.0.0.1", server_key, ca, ca_key)
    ca_pem = ca.public_bytes(serialization.Encoding.PEM).decode()
    (state / "server.crt").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    (state / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    web = {
        "tls_server_config": {"cert_file": str(state / "server.crt"), "key_file": str(state / "server.key")},
        # Cost 4: the cheapest bcrypt, so the check costs the tests nothing.
        "basic_auth_users": {USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()},
    }
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    prom = start_prometheus(
        state,
        {"scrape_configs": []},
        web,
        ready_context=ssl.create_default_context(cadata=ca_pem),
        ready_headers={"Authorization": f"Basic {basic}"},
    )
    yield SecurePrometheus(prom.url, ca_pem)
    prom.stop()


def test_basic_auth_over_tls_verified_by_the_given_ca(secure: SecurePrometheus) -> None:
    config = PrometheusConfig(address=secure.url, username=USER, password=PASSWORD, ca_pem=secure.ca_pem)
    assert Prometheus(config).query("vector(42)") == 42.0


def test_a_wrong_password_is_a_clear_error(secure: SecurePrometheus) -> None:
    config = PrometheusConfig(address=secure.url, username=USER, password="wrong", ca_pem=secure.ca_pem)
    with pytest.raises(QueryError, match=r"refused the credentials \(HTTP 401 Unauthorized\)"):
        Prometheus(config).query("vector(42)")


def test_no_credentials_are_refused(secure: SecurePrometheus) -> None:
    with pytest.raises(QueryError, match="HTTP 401"):
        Prometheus(PrometheusConfig(address=secure.url, ca_pem=secure.ca_pem)).query("vector(42)")


def test_tls_without_the_ca_fails_verification_clearly(secure: SecurePrometheus) -> None:
    config = PrometheusConfig(address=secure.url, username=USER, password=PASSWORD)
    with pytest.raises(QueryError, match=r"TLS with Prometheus at .* failed: .*certificate verify failed"):
        Prometheus(config).query("vector(42)")


def test_another_ca_is_not_trusted(secure: SecurePrometheus) -> None:
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("another CA", other_key, None, other_key).public_bytes(serialization.Encoding.PEM).decode()
    config = PrometheusConfig(address=secure.url, username=USER, password=PASSWORD, ca_pem=other)
    with pytest.raises(QueryError, match="certificate verify failed"):
        Prometheus(config).query("vector(42)")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_verify_talks_tls_without_verifying(secure: SecurePrometheus) -> None:
    config = PrometheusConfig(address=secure.url, username=USER, password=PASSWORD, insecure_skip_verify=True)
    assert Prometheus(config).query("vector(42)") == 42.0
    other_key = ec.generate_private_key(ec.SECP256R1())
    other = _cert("another CA", other_key, None, other_key).public_bytes(serialization.Encoding.PEM).decode()
    with_wrong_ca = PrometheusConfig(
        address=secure.url, username=USER, password=PASSWORD, ca_pem=other, insecure_skip_verify=True
    )
    assert Prometheus(with_wrong_ca).query("vector(42)") == 42.0  # skipping wins over a CA


class _TokenRecorder(BaseHTTPRequestHandler):
    """Answers every query with the scalar 7 and remembers the path and Authorization header."""

    seen: list[tuple[str, str | None]] = []  # noqa: RUF012  # one test uses it

    def do_GET(self) -> None:
        type(self).seen.append((self.path.split("?")[0], self.headers.get("Authorization")))
        body = json.dumps(
            {"status": "success", "data": {"resultType": "scalar", "result": [1.0, "7"]}}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


def test_a_bearer_token_is_sent_as_the_authorization_header() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TokenRecorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"http://127.0.0.1:{server.server_address[1]}/prefix/"
        assert Prometheus(PrometheusConfig(address=address, bearer_token="t0k.en")).query("up") == 7.0
        assert _TokenRecorder.seen == [("/prefix/api/v1/query", "Bearer t0k.en")]
    finally:
        server.shutdown()
        server.server_close()
