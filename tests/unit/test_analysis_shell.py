"""The pure parts of analysis's shell: smoke-test answers, verdict counting, PromQL planning."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from modelship import api, metrics
from modelship.analysis import measure
from modelship.core import gates
from modelship.core.analysis import runs
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.kube.smoke import outputs_of

pytestmark = pytest.mark.unit

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_classifier_answer_gives_its_probability_rows() -> None:
    answer = {"predictions": ["a", "b"], "probabilities": [[0.9, 0.1], [0.2, 0.8]]}
    assert outputs_of(answer, 2) == ((0.9, 0.1), (0.2, 0.8))


def test_a_regressor_answer_gives_each_prediction_as_a_vector() -> None:
    assert outputs_of({"predictions": [1.5, 2]}, 2) == ((1.5,), (2.0,))


@pytest.mark.parametrize(
    ("answer", "fragment"),
    [
        ([], "not a JSON object"),
        ({"predictions": [1.0]}, "expected 2 predictions"),
        ({"predictions": ["cat", "dog"]}, "not numeric"),
    ],
)
def test_an_answer_that_cannot_be_compared_says_why(answer: object, fragment: str) -> None:
    outputs = outputs_of(answer, 2)
    assert all(isinstance(o, str) and fragment in o for o in outputs)


SMOKE = api.SmokeTest(inputs=[[1.0], [2.0]], expected=[[0.5, 0.5], [0.1, 0.9]], tolerance=0.05)


@pytest.mark.parametrize(
    ("outputs", "fragment"),
    [
        (((0.5, 0.5), (0.1, 0.9)), None),
        (((0.52, 0.48), (0.1, 0.9)), None),
        (((0.5, 0.5), (0.9, 0.1)), "input 1: output[0] = 0.9, expected 0.1 within tolerance 0.05"),
        (((0.5,), (0.1, 0.9)), "input 0: 1 output values, expected 2"),
        (((0.5, 0.5), "HTTP 500: boom"), "input 1: HTTP 500: boom"),
        (((float("nan"), 0.5), (0.1, 0.9)), "input 0: output[0] = nan"),
    ],
)
def test_smoke_outputs_are_compared_within_tolerance(
    outputs: tuple[object, ...], fragment: str | None
) -> None:
    why = gates.compare(SMOKE, outputs)  # type: ignore[arg-type]
    assert why == fragment if fragment is None else fragment in (why or "")


def test_a_smoke_test_with_no_answering_pod_waits() -> None:
    gate = gates.smoke_gate(SMOKE, "r1", None, gates.SmokeObservation("r1", ()), T0)
    assert gate.state == "wait"


def test_every_pod_must_match() -> None:
    good, bad = ((0.5, 0.5), (0.1, 0.9)), ((0.5, 0.5), (0.9, 0.1))
    gate = gates.smoke_gate(SMOKE, "r1", None, gates.SmokeObservation("r1", (("p0", good), ("p1", bad))), T0)
    assert gate.state == "abort" and "pod p1" in gate.message
    assert gate.smoke is not None and not gate.smoke.passed


def test_the_operator_counts_each_new_verdict_once() -> None:
    analysis = api.Analysis.model_validate(
        {"metrics": [{"name": "errors", "template": "error-rate", "max": 0.1}]}
    )
    run = runs.start("step", "r1", 1, analysis, T0)
    old = api.ModelDeploymentStatus(analysis=[run])
    run = runs.record(
        run, analysis, {"errors": RawMeasurement(0.5, requests=1e3)}, T0 + timedelta(seconds=30)
    )
    new = api.ModelDeploymentStatus(analysis=[run])
    assert metrics.new_verdicts(old, new) == [("errors", "Failed")]
    assert metrics.new_verdicts(new, new) == []


def an(**fields: object) -> api.Analysis:
    body: dict[str, object] = {
        "metrics": [{"name": "errors", "template": "error-rate", "max": 0.1}],
        **fields,
    }
    return api.Analysis.model_validate(body)


def no_secrets(namespace: str, name: str) -> dict[str, str]:
    raise LookupError("not found")


def test_the_spec_s_prometheus_wins_over_the_operator_default() -> None:
    own = an(prometheus={"address": "https://prom.example:9090", "timeout": "2s", "insecureSkipVerify": True})
    config = measure.connection(own, "ml", measure.Defaults("http://default:9090"), no_secrets)
    assert (config.address, config.timeout_seconds, config.insecure_skip_verify) == (
        "https://prom.example:9090",
        2.0,
        True,
    )
    assert measure.connection(an(), "ml", measure.Defaults("http://default:9090"), no_secrets).address == (
        "http://default:9090"
    )


def test_credentials_come_from_the_named_secret_in_the_right_namespace() -> None:
    asked: list[tuple[str, str]] = []

    def read(namespace: str, name: str) -> dict[str, str]:
        asked.append((namespace, name))
        return {"username": "u", "password": "p"}

    own = an(prometheus={"address": "http://p:9090", "authSecret": "prom-auth"})
    assert measure.connection(own, "ml", measure.Defaults(), read).username == "u"
    defaults = measure.Defaults("http://p:9090", "operator-auth", "modelship-system")
    assert measure.connection(an(), "ml", defaults, read).password == "p"
    assert asked == [("ml", "prom-auth"), ("modelship-system", "operator-auth")]


@pytest.mark.parametrize(
    ("analysis", "defaults", "fragment"),
    [
        (
            an(),
            measure.Defaults(),
            "set spec.analysis.prometheus.address, or run the operator with --prometheus-address",
        ),
        (
            an(prometheus={"address": "http://p:9090", "authSecret": "gone"}),
            measure.Defaults(),
            "cannot read Secret ml/gone (spec.analysis.prometheus.authSecret)",
        ),
        (an(), measure.Defaults("http://p:9090", "gone", "ops"), "cannot read Secret ops/gone"),
    ],
)
def test_a_connection_that_cannot_be_set_up_names_what_to_fix(
    analysis: api.Analysis, defaults: measure.Defaults, fragment: str
) -> None:
    with pytest.raises(measure.ConnectionProblem, match=re.escape(fragment)):
        measure.connection(analysis, "ml", defaults, no_secrets)


def test_a_connection_problem_is_an_error_for_every_metric() -> None:
    problem = measure.ConnectionProblem("no Prometheus to query")
    got = measure.measure(problem, an(), "ml", "fraud", "fraud-new", "fraud-old", no_secrets)
    assert got == {"errors": RawMeasurement(error="no Prometheus to query")}


def test_relative_metrics_are_also_queried_for_the_stable_revision_and_custom_queries_get_variables() -> None:
    analysis = an(
        metrics=[
            {"name": "p99", "template": "latency-p99", "max": 1, "maxIncreaseVsStable": 0.1},
            {
                "name": "q",
                "query": 'max(x{revision="{{revision}}", ns="{{namespace}}"}[{{window}}])',
                "max": 1,
            },
        ]
    )
    planned, requests = measure.queries(analysis, "ml", "fraud", "fraud-new", "fraud-old")
    p99, custom = planned
    assert (
        'revision="fraud-new"' in p99.value
        and p99.stable is not None
        and 'revision="fraud-old"' in p99.stable
    )
    assert custom.value == 'max(x{revision="fraud-new", ns="ml"}[60s])' and custom.stable is None
    assert 'revision="fraud-new"' in requests
