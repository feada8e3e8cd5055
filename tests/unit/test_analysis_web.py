"""Web metrics' pure parts: the JSONPath subset, what an answer's value is, and its verdicts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from modelship import api
from modelship.core.analysis import cadence, jsonpath, runs, templates
from modelship.core.analysis import web as reading
from modelship.core.analysis.verdicts import RawMeasurement, floor, judge

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DOC = {"data": {"accuracy": 0.93, "ok": True, "runs": [{"p99": "0.12"}, {"p99": 0.4}]}, "error rate": 0.01}


@pytest.mark.parametrize(
    ("path", "steps"),
    [
        ("$", ()),
        ("$.data.accuracy", ("data", "accuracy")),
        ("data.accuracy", ("data", "accuracy")),
        ("{$.data.runs[1].p99}", ("data", "runs", 1, "p99")),
        ("$['error rate']", ("error rate",)),
        ("$.data['runs'][0]['p99']", ("data", "runs", 0, "p99")),
        ("$.a_b.c-d[10]", ("a_b", "c-d", 10)),
    ],
)
def test_a_path_in_the_subset_parses_into_its_steps(path: str, steps: tuple[object, ...]) -> None:
    assert jsonpath.parse(path) == steps


BAD_PATHS = [
    "",
    "$..accuracy",
    "$.data[*]",
    "$.runs[-1]",
    "$.a[?(@.x)]",
    "{$.a",
    "$.a.",
    ".a",
    "$['a'",
    "a b",
]


@pytest.mark.parametrize("path", BAD_PATHS)
def test_a_path_outside_the_subset_is_refused_by_the_parser_and_the_api_naming_the_field(path: str) -> None:
    with pytest.raises(ValueError, match="jsonPath"):
        jsonpath.parse(path)
    with pytest.raises(ValidationError, match=r"spec\.analysis\.metrics\[\]\.web\.jsonPath"):
        api.WebMetric.model_validate({"url": "http://x", "jsonPath": path})


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("$.data.accuracy", 0.93),
        ("$.data.runs[0].p99", "0.12"),
        ("$['error rate']", 0.01),
        ("$.data.ok", True),
        ("$.data.runs[1]", {"p99": 0.4}),
    ],
)
def test_find_walks_keys_indexes_and_quoted_keys(path: str, found: object) -> None:
    assert jsonpath.find(DOC, path) == found


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("$.data.recall", "$.data.recall"),
        ("$.data.runs[2].p99", "$.data.runs[2]"),
        ("$.data[0]", "$.data[0]"),  # an index on an object
        ("$.data.accuracy.value", "$.data.accuracy.value"),  # a key on a number
        ("$.data.runs.p99", "$.data.runs.p99"),  # a key on a list
    ],
)
def test_a_path_that_finds_nothing_is_missing_and_says_where(path: str, where: str) -> None:
    found = jsonpath.find(DOC, path)
    assert isinstance(found, jsonpath.Missing) and found.where == where


@pytest.mark.parametrize(
    ("value", "number"),
    [
        (0.5, 0.5),
        (3, 3.0),
        (True, 1.0),
        (False, 0.0),
        ("0.25", 0.25),
        (" 7 ", 7.0),
        ("1e-3", 0.001),
        (None, None),
    ],
)
def test_numbers_booleans_and_numeric_strings_are_values(value: object, number: float | None) -> None:
    assert jsonpath.number(value) == number


@pytest.mark.parametrize(
    ("value", "words"), [("high", "'high', not a number"), ({}, "an object"), ([1], "a list")]
)
def test_other_values_are_not_numbers(value: object, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        jsonpath.number(value)


def test_a_nan_string_is_no_value() -> None:
    assert jsonpath.number("NaN") is None


BODY = json.dumps(DOC)


@pytest.mark.parametrize(
    ("status", "body", "path", "expected"),
    [
        (200, BODY, "$.data.accuracy", reading.Reading(value=0.93)),
        (201, BODY, "$.data.ok", reading.Reading(value=1.0)),
        (200, BODY, "$.data.runs[0].p99", reading.Reading(value=0.12)),
        (200, "0.5", "$", reading.Reading(value=0.5)),
        (
            200,
            BODY,
            "$.data.recall",
            reading.Reading(missing="nothing at $.data.recall in the answer (web.jsonPath $.data.recall)"),
        ),
        (200, '{"v": null}', "$.v", reading.Reading(missing="null at web.jsonPath $.v")),
    ],
)
def test_an_answer_reads_as_a_value_or_no_data(
    status: int, body: str, path: str, expected: reading.Reading
) -> None:
    assert reading.read(status, body, path) == expected


@pytest.mark.parametrize(
    ("status", "body", "path", "words"),
    [
        (500, "boom\n  at line 3", "$.v", "answered HTTP 500: boom at line 3"),
        (404, "", "$.v", "answered HTTP 404"),
        (302, "", "$.v", "answered HTTP 302"),
        (200, "<html>ok</html>", "$.v", "answered HTTP 200 with a body that is not JSON: '<html>ok</html>'"),
        (200, '{"v": "fast"}', "$.v", "answered 'fast', not a number at web.jsonPath $.v"),
        (200, '{"v": {"a": 1}}', "$.v", "answered an object, not a number at web.jsonPath $.v"),
        (200, '{"v": 1}', "$..v", "web.jsonPath '$..v' is not in the supported subset"),
    ],
)
def test_an_answer_that_is_not_a_measurement_is_an_error_that_says_which(
    status: int, body: str, path: str, words: str
) -> None:
    found = reading.read(status, body, path)
    assert found.value is None and found.error is not None and words in found.error


def web_analysis(**metric: object) -> api.Analysis:
    body = {
        "name": "eval",
        "provider": "web",
        "min": 0.9,
        "web": {"url": "http://eval.ml/score?revision={{revision}}", "jsonPath": "$.accuracy"},
        **metric,
    }
    return api.Analysis.model_validate({"metrics": [body]})


@pytest.mark.parametrize(
    ("raw", "verdict", "words"),
    [
        (RawMeasurement(value=0.95), "Successful", "eval = 0.95 within min 0.9"),
        (RawMeasurement(value=0.5), "Failed", "eval = 0.5 is below min 0.9"),
        (RawMeasurement(value=0.0), "Failed", "below min"),  # false from a boolean check
        (
            RawMeasurement(error="web GET http://eval.ml/score answered HTTP 500"),
            "Error",
            "answered HTTP 500",
        ),
        (
            RawMeasurement(missing="nothing at $.accuracy in the answer"),
            "Inconclusive",
            "eval: no data: nothing at $.accuracy in the answer (noData: inconclusive)",
        ),
    ],
)
def test_a_web_value_is_judged_like_a_prometheus_one(raw: RawMeasurement, verdict: str, words: str) -> None:
    analysis = web_analysis()
    got, message = judge(analysis.metrics[0], analysis, raw)
    assert got == verdict and words in message


def test_no_data_from_a_web_metric_follows_the_no_data_policy() -> None:
    analysis = web_analysis().model_copy(update={"no_data": "fail"})
    assert judge(analysis.metrics[0], analysis, RawMeasurement())[0] == "Failed"


def test_a_web_metric_needs_no_request_count_even_with_min_requests() -> None:
    analysis = web_analysis().model_copy(update={"min_requests": 100})
    assert floor(analysis.metrics[0], analysis) == 0
    assert judge(analysis.metrics[0], analysis, RawMeasurement(value=0.95))[0] == "Successful"


def test_a_web_metric_is_compared_with_the_stable_revisions_answer() -> None:
    analysis = web_analysis(maxDropVsStable=0.02)
    metric = analysis.metrics[0]
    verdict, message = judge(metric, analysis, RawMeasurement(value=0.91, stable_value=0.96))
    assert verdict == "Failed" and "maxDropVsStable 0.02" in message
    assert judge(metric, analysis, RawMeasurement(value=0.95, stable_value=0.96))[0] == "Successful"


def test_web_errors_in_a_row_end_the_run_as_error() -> None:
    analysis = web_analysis().model_copy(update={"consecutive_error_limit": 1})
    run = runs.start("step", "r1", 1, analysis, T0)
    down = {"eval": RawMeasurement(error="web GET http://eval.ml/score did not answer within 10s")}
    run = runs.record(run, analysis, down, T0 + timedelta(seconds=30))
    assert run.phase == "Running"
    run = runs.record(run, analysis, down, T0 + timedelta(seconds=60))
    assert run.phase == "Error" and "did not answer within 10s" in run.message


def test_web_metrics_that_pass_count_measurements_pass_the_run() -> None:
    analysis = web_analysis().model_copy(update={"count": 2})
    run = runs.start("step", "r1", 1, analysis, T0)
    for i in (1, 2):
        run = runs.record(run, analysis, {"eval": RawMeasurement(value=0.97)}, T0 + timedelta(seconds=30 * i))
    assert run.phase == "Successful"


@pytest.mark.parametrize(
    ("metric", "words"),
    [
        (
            {"provider": "web", "max": 1, "web": {"url": "http://x", "jsonPath": "$", "timeout": "soon"}},
            "must be a duration",
        ),
        (
            {
                "provider": "web",
                "max": 1,
                "web": {
                    "url": "http://x",
                    "jsonPath": "$",
                    "headers": [{"name": "bad header", "value": "v"}],
                },
            },
            "pattern",
        ),
    ],
)
def test_web_metric_fields_are_checked(metric: dict[str, object], words: str) -> None:
    body = {"name": "m", **metric}
    with pytest.raises(ValidationError, match=words):
        api.Metric.model_validate(body)


def test_the_default_provider_is_prometheus_so_existing_specs_are_unchanged() -> None:
    metric = api.Metric.model_validate({"name": "e", "template": "error-rate", "max": 0.1})
    assert metric.provider == "prometheus" and metric.web is None
    assert "provider" not in metric.model_dump(by_alias=True, exclude_defaults=True)


def test_a_json_body_template_keeps_its_own_closing_braces() -> None:
    body = '{"model": {"revision": "{{revision}}", "against": "{{stable_revision}}"}}'
    assert json.loads(templates.render(body, {"revision": "r2", "stable_revision": "r1"}, json=True)) == {
        "model": {"revision": "r2", "against": "r1"}
    }
    with pytest.raises(ValueError, match="unclosed or malformed"):
        templates.render(body, {"revision": "r2", "stable_revision": "r1"})  # PromQL keeps its check


def test_a_run_of_web_metrics_alone_looks_only_at_its_interval() -> None:
    analysis = web_analysis()
    run = runs.start("step", "r1", 1, analysis, T0)
    now = T0 + timedelta(seconds=5)  # in the first window, where Prometheus metrics are probed
    scrape = cadence.Scrape(interval=timedelta(seconds=5), last=T0, seen_at=now)
    assert not cadence.fast(run, analysis, now, scrape)
    assert cadence.wake(run, analysis, None, now) is None  # no scrape timing to ask for again
    mixed = api.Analysis.model_validate(
        {
            "metrics": [
                *analysis.model_dump(by_alias=True)["metrics"],
                {"name": "e", "template": "error-rate", "max": 0.1},
            ]
        }
    )
    assert cadence.fast(runs.start("step", "r1", 1, mixed, T0), mixed, now, scrape)


def test_the_docs_example_is_a_valid_analysis() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    section = text.split("## Webhook metrics", 1)[1]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    analysis = api.Analysis.model_validate(yaml.safe_load(block)["spec"]["analysis"])
    web_metric = next(m for m in analysis.metrics if m.provider == "web")
    assert web_metric.web is not None and jsonpath.parse(web_metric.web.json_path) == ("result", "accuracy")
