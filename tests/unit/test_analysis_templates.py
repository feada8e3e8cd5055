"""Builtin analysis queries: rendering rules, bad variables, and drift against the metrics contract
and docs/metrics.md."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from modelship.core.analysis import templates
from modelship.core.analysis.templates import TEMPLATES, VARIABLES, render, requests_query, template_query

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
CONTRACT = json.loads((ROOT / "serving-image/modelserver/metrics_contract.json").read_text())
ALL = {**TEMPLATES, "requests": templates.REQUESTS_TEMPLATE}
VARS = {"namespace": "ml", "name": "fraud", "revision": "fraud-3f2a9c1", "window": "1m"}


def test_the_builtin_names_are_those_the_api_documents() -> None:
    assert set(TEMPLATES) == {
        "error-rate",
        "latency-p50",
        "latency-p95",
        "latency-p99",
        "accuracy",
        "confidence-mean",
        "prediction-agreement",
        "prediction-mean-abs-difference",
        "confidence-shift",
    }


def test_template_query_selects_the_revision_in_its_namespace_over_the_window() -> None:
    q = template_query("latency-p99", namespace="ml", name="fraud", revision="fraud-3f2a9c1", window="2m")
    assert q == (
        "histogram_quantile(0.99, sum by (le) (rate(modelserver_request_duration_seconds_bucket{"
        'namespace="ml", revision="fraud-3f2a9c1", route=~"/predict|/v2/models/{name}/infer"}[2m])))'
    )


@pytest.mark.parametrize("name", sorted(ALL))
def test_every_query_uses_the_namespace_revision_and_window_and_renders_completely(name: str) -> None:
    query = ALL[name]
    assert {"{{namespace}}", "{{revision}}", "{{window}}"} <= set(re.findall(r"\{\{\w+\}\}", query))
    rendered = render(query, VARS)
    assert "{{" not in rendered and 'revision="fraud-3f2a9c1"' in rendered and "[1m]" in rendered


def test_requests_query_counts_model_requests_of_the_revision() -> None:
    q = requests_query(namespace="ml", name="fraud", revision="r1", window="5m")
    assert q.startswith("sum(increase(modelserver_requests_total{") and 'revision="r1"' in q
    assert q.endswith("[5m]))")


def test_custom_queries_get_every_variable_with_or_without_spaces() -> None:
    q = 'sum(x{ns="{{ namespace }}", d="{{name}}", r="{{revision}}", s="{{stable_revision}}"}[{{window}}])'
    assert render(q, {**VARS, "stable_revision": "fraud-0000001"}) == (
        'sum(x{ns="ml", d="fraud", r="fraud-3f2a9c1", s="fraud-0000001"}[1m])'
    )


def test_a_query_without_placeholders_is_unchanged_and_single_braces_are_promql() -> None:
    q = 'sum(rate(x{route="/v2/models/{name}/infer"}[5m]))'
    assert render(q, {}) == q


def test_an_unknown_placeholder_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown variable \{\{canary\}\}.*known: revision"):
        render('x{r="{{canary}}"}', VARS)


def test_a_placeholder_without_a_value_is_named() -> None:
    with pytest.raises(ValueError, match=r"\{\{stable_revision\}\} has no value"):
        render('x{r="{{stable_revision}}"}', VARS)


def test_an_unknown_variable_passed_in_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown variable 'model'"):
        render("x", {"model": "m"})


@pytest.mark.parametrize("query", ['x{r="{{revision}"}', 'x{r="{{ }}"}', 'x{r="{{rev ision}}"}'])
def test_a_malformed_placeholder_is_refused(query: str) -> None:
    with pytest.raises(ValueError, match=r"placeholder|unknown variable"):
        render(query, VARS)


@pytest.mark.parametrize("value", ['a"} or up{x="', "a\\", "a'b", "a`b", "a{b", "a}b", "a\nb", ""])
def test_a_value_that_could_leave_the_label_matcher_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ValueError, match=r"\{\{revision\}\}"):
        template_query("error-rate", namespace="ml", name="fraud", revision=value, window="1m")


@pytest.mark.parametrize("window", ["1m", "30s", "1h30m", "500ms"])
def test_windows_are_promql_durations(window: str) -> None:
    assert f"[{window}]" in template_query("accuracy", namespace="n", name="d", revision="r", window=window)


@pytest.mark.parametrize("window", ["1", "1 m", "1m]) or vector(1", "-1m", "1.5m", "m"])
def test_a_window_that_is_not_a_duration_is_refused(window: str) -> None:
    with pytest.raises(ValueError, match=r"\{\{window\}\}.*not a PromQL duration"):
        requests_query(namespace="n", name="d", revision="r", window=window)


def test_an_unknown_template_lists_the_builtin_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown template 'p99'; builtin: error-rate, latency-p50"):
        template_query("p99", namespace="n", name="d", revision="r", window="1m")


def test_variables_are_documented() -> None:
    assert set(VARIABLES) == {"revision", "stable_revision", "name", "namespace", "window"}
    assert all(VARIABLES.values())


# Drift: the queries read only names and label values of the metrics contract.


def _contract_series() -> set[str]:
    names: set[str] = set()
    for metric in CONTRACT["metrics"]:
        if metric["type"] == "histogram":
            names |= {f"{metric['name']}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            names.add(metric["name"])
    return names


@pytest.mark.parametrize("name", sorted(ALL))
def test_queries_read_only_metric_names_of_the_contract(name: str) -> None:
    used = set(re.findall(r"\b(modelserver_\w+)\{", ALL[name]))
    assert used and used <= _contract_series()


@pytest.mark.parametrize("name", sorted(ALL))
def test_queries_use_only_labels_and_values_of_the_contract(name: str) -> None:
    labels = {label for m in CONTRACT["metrics"] for label in m["labels"]} | {"le"}
    scrape_labels = {"namespace", "revision"}  # set by the recommended scrape config
    for label, op, value in re.findall(r'(\w+)(=~|=)"([^"]*)"', ALL[name]):
        assert label in labels | scrape_labels
        if label in CONTRACT["label_values"]:
            values = value.split("|") if op == "=~" else [value]
            assert set(values) <= set(CONTRACT["label_values"][label]), (label, values)


# Drift: docs/metrics.md shows exactly these queries.


def _documented_queries() -> dict[str, str]:
    text = (ROOT / "docs/metrics.md").read_text()
    section = text.split("<!-- templates:start -->")[1].split("<!-- templates:end -->")[0]
    return dict(re.findall(r"`([\w-]+)`[^\n]*\n\n```promql\n(.*?)\n```", section, re.S))


def test_docs_show_the_builtin_queries_verbatim() -> None:
    assert _documented_queries() == ALL


def test_docs_list_the_variables() -> None:
    text = (ROOT / "docs/analysis.md").read_text()
    for name in VARIABLES:
        assert f"`{{{{{name}}}}}`" in text, name
