"""Builtin analysis queries for the serving image's metrics contract, and the `{{variable}}` renderer.

Every query selects one revision by the `namespace` and `revision` labels that the recommended
scrape config sets (docs/metrics.md) and uses `[{{window}}]` as its range. The metric names and
label values they read are those of serving-image/modelserver/metrics_contract.json (a test
keeps them in step), and docs/metrics.md shows these exact texts (a test keeps it equal).
Model traffic is `/predict` and the V2 infer route; health checks, metadata and scrapes are not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

VARIABLES: Mapping[str, str] = {
    "revision": "the revision being judged (the canary; the stable one when comparing against it)",
    "stable_revision": "the stable revision (absent before the first promotion)",
    "name": "the ModelDeployment's name",
    "namespace": "the ModelDeployment's namespace",
    "window": "the range of rate() and increase(), a PromQL duration such as 1m",
}

# `or vector(0)` on numerators: a revision that never failed has no 5xx series at all, which is
# 0%, not "no data". With no traffic the denominator is empty or 0: no data (None), never 0%.
TEMPLATES: Mapping[str, str] = {
    "error-rate": """\
(sum(rate(modelserver_requests_total{namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer", code=~"5.."}[{{window}}])) or vector(0))
/
sum(rate(modelserver_requests_total{namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer"}[{{window}}]))""",  # noqa: E501
    "latency-p50": """\
histogram_quantile(0.5, sum by (le) (rate(modelserver_request_duration_seconds_bucket{namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer"}[{{window}}])))""",  # noqa: E501
    "latency-p95": """\
histogram_quantile(0.95, sum by (le) (rate(modelserver_request_duration_seconds_bucket{namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer"}[{{window}}])))""",  # noqa: E501
    "latency-p99": """\
histogram_quantile(0.99, sum by (le) (rate(modelserver_request_duration_seconds_bucket{namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer"}[{{window}}])))""",  # noqa: E501
    "accuracy": """\
(sum(rate(modelserver_feedback_total{namespace="{{namespace}}", revision="{{revision}}", outcome="correct"}[{{window}}])) or vector(0))
/
sum(rate(modelserver_feedback_total{namespace="{{namespace}}", revision="{{revision}}"}[{{window}}]))""",  # noqa: E501
    "confidence-mean": """\
sum(rate(modelserver_prediction_confidence_sum{namespace="{{namespace}}", revision="{{revision}}"}[{{window}}]))
/
sum(rate(modelserver_prediction_confidence_count{namespace="{{namespace}}", revision="{{revision}}"}[{{window}}]))""",  # noqa: E501
    # Shadow comparisons (a `shadow` step): exported by the stable pods, whose `revision` is stable's;
    # `shadow_revision` is the candidate judged.
    "prediction-agreement": """\
(sum(rate(modelserver_shadow_agreements_total{namespace="{{namespace}}", shadow_revision="{{revision}}"}[{{window}}])) or vector(0))
/
sum(rate(modelserver_shadow_rows_total{namespace="{{namespace}}", shadow_revision="{{revision}}"}[{{window}}]))""",  # noqa: E501
    "prediction-mean-abs-difference": """\
sum(rate(modelserver_shadow_abs_difference_total{namespace="{{namespace}}", shadow_revision="{{revision}}"}[{{window}}]))
/
sum(rate(modelserver_shadow_rows_total{namespace="{{namespace}}", shadow_revision="{{revision}}"}[{{window}}]))""",  # noqa: E501
    "confidence-shift": """\
((sum(rate(modelserver_shadow_confidence_total{namespace="{{namespace}}", shadow_revision="{{revision}}", answer="candidate"}[{{window}}])) or vector(0))
-
(sum(rate(modelserver_shadow_confidence_total{namespace="{{namespace}}", shadow_revision="{{revision}}", answer="stable"}[{{window}}])) or vector(0)))
/
sum(rate(modelserver_shadow_confidence_rows_total{namespace="{{namespace}}", shadow_revision="{{revision}}"}[{{window}}]))""",  # noqa: E501
}
# Model requests the revision answered in the window, for `minRequests`. No series (None): it has
# answered none since Prometheus first saw it.
REQUESTS_TEMPLATE = """\
sum(increase(modelserver_requests_total{namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer"}[{{window}}]))"""  # noqa: E501


def _counted(selector: str) -> str:
    """What counter `selector` counted in the window: per series, its growth since the window
    began, or the whole value of a series born inside it (a new pod; counters start at 0). Unlike
    increase(), one sample is enough, so a new canary is judged on its first scrape."""
    return f"sum(clamp_min({selector} - {selector} offset {{{{window}}}}, 0) or {selector})"


_MODEL = 'namespace="{{namespace}}", revision="{{revision}}", route=~"/predict|/v2/models/{name}/infer"'
_FEEDBACK = 'namespace="{{namespace}}", revision="{{revision}}"'
_BUCKET = f"modelserver_request_duration_seconds_bucket{{{_MODEL}"
_SHADOW = 'namespace="{{namespace}}", shadow_revision="{{revision}}"'
# Rate metrics as k events of n requests (`stats.Tally`), for failing only beyond doubt. The
# latency quantiles become the share of requests slower than the limit: p99 > max exactly when more
# than 1% of requests took longer than max. Their `{{le}}` is the smallest bucket at or above max
# (fewer requests exceed it, so the share is never overstated).
TALLIES: Mapping[str, tuple[str, str]] = {
    "error-rate": (
        _counted(f'modelserver_requests_total{{{_MODEL}, code=~"5.."}}') + " or vector(0)",
        _counted(f"modelserver_requests_total{{{_MODEL}}}"),
    ),
    "accuracy": (
        _counted(f'modelserver_feedback_total{{{_FEEDBACK}, outcome="correct"}}') + " or vector(0)",
        _counted(f"modelserver_feedback_total{{{_FEEDBACK}}}"),
    ),
    "prediction-agreement": (
        _counted(f"modelserver_shadow_agreements_total{{{_SHADOW}}}") + " or vector(0)",
        _counted(f"modelserver_shadow_rows_total{{{_SHADOW}}}"),
    ),
    "latency": (
        _counted(f'{_BUCKET}, le="+Inf"}}') + " - " + _counted(f'{_BUCKET}, le="{{{{le}}}}"}}'),
        _counted(f'{_BUCKET}, le="+Inf"}}'),
    ),
}
# An experiment's latency: what each bucket of a revision's request-duration histogram counted since
# the experiment began (`{{window}}` = its age), cumulative by `le` as Prometheus keeps it.
EXPERIMENT_LATENCY = (
    f"sum by (le) (clamp_min({_BUCKET}}} - {_BUCKET}}} offset {{{{window}}}}, 0) or {_BUCKET}}})"
)
# modelserver_request_duration_seconds' buckets (metrics_contract.json; a test keeps them equal).
REQUEST_DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_QUANTILES = {"latency-p50": 0.5, "latency-p95": 0.95, "latency-p99": 0.99}

_PLACEHOLDER = re.compile(r"\{\{\s*([^{}\s]*)\s*\}\}")
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")
# Values land inside quoted label matchers: none of these may close the string or the selector.
_FORBIDDEN = frozenset("\"'`\\{}") | {chr(c) for c in range(32)} | {"\x7f"}


def _check_value(name: str, value: str) -> None:
    if not value:
        raise ValueError(f"variable {{{{{name}}}}} is empty")
    if name == "window":
        if not _DURATION.fullmatch(value):
            raise ValueError(f"variable {{{{window}}}} = {value!r} is not a PromQL duration like 30s or 1m")
        return
    bad = sorted({c for c in value if c in _FORBIDDEN})
    if bad:
        raise ValueError(
            f"variable {{{{{name}}}}} = {value!r} contains {', '.join(repr(c) for c in bad)}: "
            "quotes, backslashes, braces and control characters are not allowed"
        )


def render(query: str, variables: Mapping[str, str], *, json: bool = False) -> str:
    """`query` with every `{{variable}}` replaced. ValueError names an unknown or missing variable,
    or a value that could break out of a label matcher (or a JSON string). `json`: the text is a
    JSON body, whose nested objects end in `}}` of their own."""
    for name in variables:
        if name not in VARIABLES:
            raise ValueError(f"unknown variable {name!r}; known: {', '.join(VARIABLES)}")
    for name in _PLACEHOLDER.findall(query):
        if name not in VARIABLES:
            raise ValueError(f"unknown variable {{{{{name}}}}} in the query; known: {', '.join(VARIABLES)}")
        if name not in variables:
            raise ValueError(f"variable {{{{{name}}}}} has no value here")
        _check_value(name, variables[name])
    rendered = _PLACEHOLDER.sub(lambda m: variables[m.group(1)], query)
    if "{{" in rendered or ("}}" in rendered and not json):
        raise ValueError("the query has an unclosed or malformed {{...}} placeholder")
    return rendered


def _variables(namespace: str, name: str, revision: str, window: str) -> dict[str, str]:
    return {"namespace": namespace, "name": name, "revision": revision, "window": window}


def template_query(template: str, *, namespace: str, name: str, revision: str, window: str) -> str:
    """The builtin `template`'s PromQL for one revision."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; builtin: {', '.join(TEMPLATES)}")
    return render(TEMPLATES[template], _variables(namespace, name, revision, window))


def requests_query(*, namespace: str, name: str, revision: str, window: str) -> str:
    """Model requests `revision` answered in the last `window` (for `minRequests`)."""
    return render(REQUESTS_TEMPLATE, _variables(namespace, name, revision, window))


@dataclass(frozen=True)
class TallyRule:
    """A metric judged as a rate: its events and requests queries, and the rate's bounds."""

    events: str
    requests: str
    above: float | None  # fails beyond doubt when the rate is above this
    below: float | None  # ... or below this
    # Whether the tally's rate is the metric's own value (error-rate, accuracy), or only a tail
    # share (the latency quantiles). A proportion stands in for a value not there yet (rate()
    # needs two samples, the tally one), and must show a success too when no minRequests is set;
    # a tail share does not: proving a 1% tail under its limit takes ~300 requests per window,
    # more than most canaries see.
    proportion: bool = True


def tally_rule(template: str | None, max_: float | None, min_: float | None) -> TallyRule | None:
    """How a builtin template's metric with these bounds is tallied; None: it is not a rate."""
    if template in ("error-rate", "accuracy", "prediction-agreement"):
        events, requests = TALLIES[template]
        return TallyRule(events, requests, max_, min_)
    quantile = _QUANTILES.get(template or "")
    if quantile is None or max_ is None:
        return None
    le = next((b for b in REQUEST_DURATION_BUCKETS if b >= max_), None)
    if le is None:
        return None  # above the largest finite bucket: the histogram cannot tell
    events, requests = TALLIES["latency"]
    return TallyRule(events.replace("{{le}}", repr(le)), requests, 1 - quantile, None, proportion=False)


def tally_queries(
    rule: TallyRule, *, namespace: str, name: str, revision: str, window: str
) -> tuple[str, str]:
    """The rule's (events, requests) PromQL for one revision."""
    variables = _variables(namespace, name, revision, window)
    return render(rule.events, variables), render(rule.requests, variables)


def experiment_latency_query(*, namespace: str, name: str, revision: str, window: str) -> str:
    """The request-duration buckets `revision` counted in the last `window`, one series per `le`."""
    return render(EXPERIMENT_LATENCY, _variables(namespace, name, revision, window))
