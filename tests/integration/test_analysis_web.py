"""Web metrics (`provider: web`) over real HTTP: a loopback endpoint in the test answers JSON.

First the shell alone (the call, its body, headers from Secrets, every kind of bad answer), then
the API server's admission rules, then the real operator (a subprocess) judging KWOK canaries with
a web metric: one the endpoint scores badly is failed and aborted, one it scores well is promoted.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from devcluster.cluster import free_port
from localworld.rollouts import at
from modelship import api
from modelship.analysis import measure, web
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.kube.storage import Storage, secrets_path

from .mdhelpers import (
    Operator,
    crd_installed,
    create_md,
    deploy_stable,
    example,
    kube,
    md_path,
    md_status,
    operator,
    refusal,
    revision,
    wait_until,
)

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

TOKEN = "s3cret-t0ken"  # what the Secret holds: it must reach the endpoint and nothing else


@dataclass
class Seen:
    method: str
    path: str
    headers: Mapping[str, str]
    body: str


@dataclass
class Endpoint:
    """A loopback JSON endpoint: per `revision` query parameter, (status, body) or a delay."""

    answers: dict[str, tuple[int, str]] = field(default_factory=dict)
    default: tuple[int, str] = (200, '{"accuracy": 0.97}')
    delay: float = 0.0
    echo: bool = False  # answer 500 with the request's headers in the body
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            state.seen.append(Seen(self.command, self.path, dict(self.headers.items()), body))
            if state.delay:
                time.sleep(state.delay)
            revision = (parse_qs(urlsplit(self.path).query).get("revision") or [""])[0]
            status, text = state.answers.get(revision, state.default)
            if state.echo:
                status, text = 500, json.dumps(dict(self.headers.items()))
            out = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = _answer

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def secrets(namespace: str, name: str) -> dict[str, str]:
    if (namespace, name) == ("ml", "eval-auth"):
        return {"token": TOKEN + "\n"}
    raise LookupError("not found")


AUTH = {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "eval-auth", "key": "token"}}}


def metric(url: str, relative: dict[str, float] | None = None, **fields: Any) -> api.Metric:
    """The web metric `eval` (min 0.9) on `url`/score; `fields` go into `web`."""
    web_fields = {"url": url + "/score?revision={{revision}}", "jsonPath": "$.accuracy", **fields}
    body = {"name": "eval", "provider": "web", "min": 0.9, "web": web_fields, **(relative or {})}
    return api.Metric.model_validate(body)


VARIABLES = {
    "revision": "fraud-new",
    "stable_revision": "fraud-old",
    "name": "fraud",
    "namespace": "ml",
    "window": "60s",
}


def measured(m: api.Metric, read: Callable[[str, str], Mapping[str, str]] = secrets) -> RawMeasurement:
    return web.measure(m, VARIABLES, "fraud-old", read)


def test_a_post_sends_its_rendered_body_and_the_secret_header_and_reads_the_value(endpoint: Endpoint) -> None:
    endpoint.default = (200, '{"result": {"runs": [{"accuracy": "0.93"}]}}')
    body = '{"model": {"name": "{{name}}", "revision": "{{revision}}", "against": "{{stable_revision}}"}}'
    m = metric(
        endpoint.url,
        method="POST",
        body=body,
        jsonPath="{$.result.runs[0].accuracy}",
        headers=[AUTH, {"name": "X-Team", "value": "ml"}],
    )
    assert measured(m) == RawMeasurement(value=0.93)
    (seen,) = endpoint.seen
    assert (seen.method, seen.path) == ("POST", "/score?revision=fraud-new")
    assert json.loads(seen.body) == {
        "model": {"name": "fraud", "revision": "fraud-new", "against": "fraud-old"}
    }
    assert seen.headers["Authorization"] == TOKEN  # the Secret's trailing newline is dropped
    assert seen.headers["X-Team"] == "ml" and seen.headers["Content-Type"] == "application/json"


def test_relative_limits_ask_the_endpoint_again_for_the_stable_revision(endpoint: Endpoint) -> None:
    endpoint.answers = {"fraud-new": (200, '{"accuracy": 0.91}'), "fraud-old": (200, '{"accuracy": 0.96}')}
    got = measured(metric(endpoint.url, {"maxDropVsStable": 0.02}))
    assert (got.value, got.stable_value) == (0.91, 0.96)
    assert [s.path for s in endpoint.seen] == ["/score?revision=fraud-new", "/score?revision=fraud-old"]


def test_a_missing_path_is_no_data_that_says_where(endpoint: Endpoint) -> None:
    endpoint.default = (200, '{"scores": {}}')
    got = measured(metric(endpoint.url, jsonPath="$.scores.accuracy"))
    assert got.value is None and got.error is None
    assert got.missing == "nothing at $.scores.accuracy in the answer (web.jsonPath $.scores.accuracy)"


@pytest.mark.parametrize(
    ("answer", "delay", "words"),
    [
        ((503, "overloaded"), 0.0, "answered HTTP 503: overloaded"),
        ((200, "<html>fine</html>"), 0.0, "answered HTTP 200 with a body that is not JSON"),
        ((200, '{"accuracy": "high"}'), 0.0, "answered 'high', not a number at web.jsonPath $.accuracy"),
        ((200, '{"accuracy": 0.97}'), 2.0, "did not answer within 300ms"),
    ],
)
def test_a_bad_answer_or_none_is_an_error_that_says_which(
    endpoint: Endpoint, answer: tuple[int, str], delay: float, words: str
) -> None:
    endpoint.default, endpoint.delay = answer, delay
    got = measured(metric(endpoint.url, timeout="300ms"))
    assert got.value is None and got.error is not None
    assert words in got.error and f"web GET {endpoint.url}/score" in got.error
    assert "revision=" not in got.error  # the query string (it may hold a token) is not shown


def test_an_endpoint_that_is_not_there_is_an_error() -> None:
    got = measured(metric(f"http://127.0.0.1:{free_port()}"))
    assert got.error is not None and "is unreachable: [Errno 111] Connection refused" in got.error


@pytest.mark.parametrize(
    ("ref", "words"),
    [
        ({"name": "gone", "key": "token"}, "cannot read Secret ml/gone"),
        ({"name": "eval-auth", "key": "password"}, "Secret ml/eval-auth has no key 'password'"),
    ],
)
def test_a_header_secret_that_cannot_be_read_names_the_field(
    endpoint: Endpoint, ref: dict[str, str], words: str
) -> None:
    header = {"name": "Authorization", "valueFrom": {"secretKeyRef": ref}}
    got = measured(metric(endpoint.url, headers=[header]))
    assert got.error is not None and words in got.error
    assert "spec.analysis.metrics[eval].web.headers[Authorization].valueFrom" in got.error
    assert endpoint.seen == []  # no call without its credentials


def test_a_secret_header_echoed_back_is_not_repeated_in_the_message(endpoint: Endpoint) -> None:
    endpoint.echo = True
    got = measured(metric(endpoint.url, headers=[AUTH]))
    assert got.error is not None and "answered HTTP 500" in got.error and TOKEN not in got.error


def test_web_metrics_need_no_prometheus_and_prometheus_metrics_still_report_its_absence(
    endpoint: Endpoint,
) -> None:
    analysis = api.Analysis.model_validate(
        {
            "metrics": [
                metric(endpoint.url).model_dump(by_alias=True, exclude_none=True),
                {"name": "errors", "template": "error-rate", "max": 0.01},
            ]
        }
    )
    problem = measure.ConnectionProblem("no Prometheus to query")
    got = measure.measure(problem, analysis, "ml", "fraud", "fraud-new", "fraud-old", secrets)
    assert got == {
        "eval": RawMeasurement(value=0.97),
        "errors": RawMeasurement(error="no Prometheus to query"),
    }


# The API server's own rules.

WEB = {"url": "http://eval.ml.svc/score", "jsonPath": "$.accuracy"}


def with_metric(**fields: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"]["analysis"] = {"metrics": [{"name": "eval", "min": 0.9, **fields}]}
    return doc


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        (
            {"provider": "web", "template": "accuracy", "web": WEB},
            "set exactly one of template, query, web or job",
        ),
        ({"provider": "web"}, "set exactly one of template, query, web or job"),
        ({"web": WEB}, "provider web goes with web: {url, jsonPath}"),
        ({"provider": "web", "query": "up"}, "provider web goes with web"),
        (
            {"provider": "web", "web": {**WEB, "jsonPath": "$..accuracy"}},
            "spec.analysis.metrics[].web.jsonPath",
        ),
        ({"provider": "web", "web": {**WEB, "url": "ftp://x"}}, "web.url must be an http:// or https:// URL"),
        ({"provider": "web", "web": {**WEB, "body": "{}"}}, "web.body needs method: POST"),
        (
            {
                "provider": "web",
                "web": {**WEB, "headers": [{"name": "A", "value": "v", "valueFrom": AUTH["valueFrom"]}]},
            },
            "web.headers[]: set exactly one of value or valueFrom",
        ),
    ],
)
def test_a_bad_web_metric_is_refused_naming_the_field(
    kube: Storage, namespace: str, crd_installed: None, fields: dict[str, Any], words: str
) -> None:
    message = refusal(kube, namespace, with_metric(**fields))
    assert words in message, message


def test_a_web_metric_is_admitted_and_defaulted(kube: Storage, namespace: str, crd_installed: None) -> None:
    doc = with_metric(provider="web", web={**WEB, "jsonPath": "{$.runs[0]['accuracy']}", "headers": [AUTH]})
    doc["spec"]["analysis"]["metrics"].append({"name": "errors", "template": "error-rate", "max": 0.01})
    created = create_md(kube, namespace, doc)
    eval_metric, errors = created["spec"]["analysis"]["metrics"]
    assert eval_metric["web"]["method"] == "GET" and eval_metric["web"]["timeout"] == "10s"
    assert errors["provider"] == "prometheus"  # existing specs keep their meaning


# The operator, judging canaries.

NAME = "fraud-detector"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}


def manifest(image: str, url: str) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    analysis = {
        "interval": "1s",
        "count": 2,
        "metrics": [
            {
                "name": "eval",
                "provider": "web",
                "min": 0.9,
                "web": {
                    "url": url + "/score?revision={{revision}}",
                    "headers": [AUTH],
                    "jsonPath": "$.accuracy",
                    "timeout": "2s",
                },
            }
        ],
    }
    doc["spec"].update(
        {
            "image": image,
            "strategy": {"canary": {"steps": [{"setWeight": 50}, {"analysis": {}}]}},
            "analysis": analysis,
        }
    )
    return doc


def create_secret(kube: Storage, namespace: str) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "eval-auth"},
        "data": {"token": base64.b64encode(TOKEN.encode()).decode()},
    }
    kube.create(secrets_path(namespace), secret)


def step_run(kube: Storage, namespace: str, canary: str) -> dict[str, Any] | None:
    status = md_status(kube, namespace, NAME)
    return next(
        (r for r in status.get("analysis") or [] if r["kind"] == "step" and r["revision"] == canary), None
    )


def start_canary(kube: Storage, namespace: str, endpoint: Endpoint, accuracy: float) -> tuple[str, str]:
    """The stable revision, then a canary the endpoint scores `accuracy`: (stable, canary)."""
    create_secret(kube, namespace)
    stable = deploy_stable(kube, namespace, manifest(IMAGES["a"], endpoint.url))
    canary = revision(manifest(IMAGES["b"], endpoint.url))
    endpoint.answers = {canary: (200, json.dumps({"accuracy": accuracy}))}
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    return stable, canary


def test_a_web_metric_fails_a_canary(
    kube: Storage, namespace: str, operator: Operator, endpoint: Endpoint
) -> None:
    stable, canary = start_canary(kube, namespace, endpoint, 0.52)
    wait_until(
        "the canary aborted",
        lambda: at(md_status(kube, namespace, NAME), "rollout.aborted.revision") == canary,
        timeout=90,
    )
    run = step_run(kube, namespace, canary)
    assert run is not None and run["phase"] == "Failed", run
    assert "eval = 0.52 is below min 0.9" in run["message"]
    status = md_status(kube, namespace, NAME)
    assert (status["phase"], status["stableRevision"]) == ("Degraded", stable)
    progressing = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert progressing["reason"] == "AnalysisFailed" and "eval = 0.52" in progressing["message"]
    asked = [s for s in endpoint.seen if f"revision={canary}" in s.path]
    assert asked and all(s.headers["Authorization"] == TOKEN for s in asked)
    assert TOKEN not in operator.log_path.read_text()


def test_a_web_metric_passes_a_canary(
    kube: Storage, namespace: str, operator: Operator, endpoint: Endpoint
) -> None:
    _, canary = start_canary(kube, namespace, endpoint, 0.96)
    wait_until(
        "the canary promoted",
        lambda: md_status(kube, namespace, NAME).get("stableRevision") == canary,
        timeout=90,
    )
    run = step_run(kube, namespace, canary)
    assert run is not None and run["phase"] == "Successful", run
    assert [m["successful"] for m in run["metrics"]] == [2]
    assert all(m["verdict"] == "Successful" for m in run["metrics"][0]["measurements"])
