"""The shell's side of analysis: turn due runs into PromQL, ask Prometheus, hand back raw values.

Connection: `spec.analysis.prometheus` wins; otherwise the operator's default
(`--prometheus-address`, env `MODELSHIP_PROMETHEUS_ADDRESS`, the Helm value
`prometheus.address`), with credentials from the operator's auth Secret. A connection that
cannot be set up (no address, a Secret missing or malformed) is an Error for every metric:
the analysis itself is wrong, and `consecutiveErrorLimit` decides when that aborts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from modelship import api
from modelship.analysis.prometheus import Prometheus, PrometheusConfig, QueryError, config_from_secret
from modelship.core.analysis import runs, templates
from modelship.core.analysis.verdicts import RawMeasurement

SecretReader = Callable[[str, str], Mapping[str, str]]  # (namespace, name) -> decoded data


@dataclass(frozen=True)
class Defaults:
    """The operator's own Prometheus, for ModelDeployments that name none."""

    address: str | None = None
    auth_secret: str | None = None  # a Secret in `namespace` (the operator's)
    namespace: str | None = None


class ConnectionProblem(Exception):
    """The Prometheus connection cannot be set up; the message says which field to fix."""


def connection(
    analysis: api.Analysis, namespace: str, defaults: Defaults, read_secret: SecretReader
) -> PrometheusConfig:
    try:
        return _connection(analysis, namespace, defaults, read_secret)
    except ValueError as err:  # PrometheusConfig refused a value; say so rather than crash the pass
        raise ConnectionProblem(f"spec.analysis.prometheus: {err}") from err


def _connection(
    analysis: api.Analysis, namespace: str, defaults: Defaults, read_secret: SecretReader
) -> PrometheusConfig:
    own = analysis.prometheus
    if own is not None:
        timeout = api.parse_duration(own.timeout).total_seconds()
        if own.auth_secret is None:
            return PrometheusConfig(own.address, timeout, insecure_skip_verify=own.insecure_skip_verify)
        data = _secret(read_secret, namespace, own.auth_secret, "spec.analysis.prometheus.authSecret")
        return _from_secret(
            own.address, data, f"{namespace}/{own.auth_secret}", timeout, own.insecure_skip_verify
        )
    if not defaults.address:
        raise ConnectionProblem(
            "no Prometheus to query: set spec.analysis.prometheus.address, or run the operator with "
            "--prometheus-address (Helm value prometheus.address)"
        )
    if not defaults.auth_secret:
        return PrometheusConfig(defaults.address)
    where = defaults.namespace or "default"
    data = _secret(read_secret, where, defaults.auth_secret, "the operator's --prometheus-auth-secret")
    return _from_secret(defaults.address, data, f"{where}/{defaults.auth_secret}", 5.0, False)


def _secret(read: SecretReader, namespace: str, name: str, field: str) -> Mapping[str, str]:
    try:
        return read(namespace, name)
    except Exception as err:  # not found, forbidden, ...: say which field names it
        raise ConnectionProblem(f"cannot read Secret {namespace}/{name} ({field}): {err}") from err


def _from_secret(
    address: str, data: Mapping[str, str], secret: str, timeout: float, insecure: bool
) -> PrometheusConfig:
    try:
        return config_from_secret(
            address, data, secret, timeout_seconds=timeout, insecure_skip_verify=insecure
        )
    except ValueError as err:
        raise ConnectionProblem(str(err)) from err


@dataclass(frozen=True)
class MetricQueries:
    name: str
    value: str
    stable: str | None  # the same query for the stable revision, when judged against it


def queries(
    analysis: api.Analysis, namespace: str, name: str, revision: str, stable: str
) -> tuple[list[MetricQueries], str]:
    """The PromQL of every metric (and of its stable twin), and the request count for minRequests."""
    window = runs.window(analysis)

    def render(metric: api.Metric, rev: str) -> str:
        if metric.template is not None:
            return templates.template_query(
                metric.template, namespace=namespace, name=name, revision=rev, window=window
            )
        assert metric.query is not None  # admission: exactly one of template or query
        variables = {
            "revision": rev,
            "stable_revision": stable,
            "name": name,
            "namespace": namespace,
            "window": window,
        }
        return templates.render(metric.query, variables)

    out = []
    for metric in analysis.metrics:
        relative = metric.max_increase_vs_stable is not None or metric.max_drop_vs_stable is not None
        out.append(
            MetricQueries(metric.name, render(metric, revision), render(metric, stable) if relative else None)
        )
    return out, templates.requests_query(namespace=namespace, name=name, revision=revision, window=window)


def _ask(prometheus: Prometheus, promql: str) -> tuple[float | None, RawMeasurement | None]:
    """(value, None), or (None, the RawMeasurement that says what went wrong)."""
    try:
        return prometheus.query(promql), None
    except QueryError as err:
        if err.unreachable:  # Unreachable: not seeing is Inconclusive, a refused query is Error
            return None, RawMeasurement(unreachable=str(err))
        return None, RawMeasurement(error=str(err))


def measure(
    config: PrometheusConfig | ConnectionProblem,
    analysis: api.Analysis,
    namespace: str,
    name: str,
    revision: str,
    stable: str,
) -> dict[str, RawMeasurement]:
    """One round: every metric of `analysis` for `revision`, by metric name."""
    if isinstance(config, ConnectionProblem):
        return {m.name: RawMeasurement(error=str(config)) for m in analysis.metrics}
    try:
        planned, requests_promql = queries(analysis, namespace, name, revision, stable)
    except ValueError as err:  # a custom query with an unknown variable
        return {m.name: RawMeasurement(error=str(err)) for m in analysis.metrics}
    prometheus = Prometheus(config)
    try:
        requests, failed = _ask(prometheus, requests_promql) if analysis.min_requests else (None, None)
        if failed is not None:
            return {m.name: failed for m in analysis.metrics}
        out = {}
        for q in planned:
            value, failed = _ask(prometheus, q.value)
            stable_value = None
            if failed is None and q.stable is not None:
                stable_value, failed = _ask(prometheus, q.stable)
            out[q.name] = failed or RawMeasurement(value=value, stable_value=stable_value, requests=requests)
        return out
    finally:
        prometheus.close()
