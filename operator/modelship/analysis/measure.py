"""The shell's side of analysis: turn due runs into PromQL, ask Prometheus, hand back raw values;
web metrics (`provider: web`) are asked of their own endpoints (`modelship.analysis.web`).

Connection: `spec.analysis.prometheus` wins; otherwise the operator's default
(`--prometheus-address`, env `MODELSHIP_PROMETHEUS_ADDRESS`, the Helm value
`prometheus.address`), with credentials from the operator's auth Secret. A connection that
cannot be set up (no address, a Secret missing or malformed) is an Error for every metric:
the analysis itself is wrong, and `consecutiveErrorLimit` decides when that aborts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from modelship import api
from modelship.analysis import web
from modelship.analysis.prometheus import Prometheus, PrometheusConfig, QueryError, config_from_secret
from modelship.core.analysis import abtest, runs, stats, templates
from modelship.core.analysis.cadence import Scrape
from modelship.core.analysis.verdicts import RawMeasurement, floor

SecretReader = web.SecretReader


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
    tally: tuple[str, str] | None = None  # a rate metric's (events, requests) queries


def queries(
    analysis: api.Analysis, namespace: str, name: str, revision: str, stable: str
) -> tuple[list[MetricQueries], str]:
    """The PromQL of every Prometheus metric (and of its stable twin), and the request count for
    minRequests."""
    window = runs.window(analysis)

    def render(metric: api.Metric, rev: str) -> str:
        if metric.template is not None:
            return templates.template_query(
                metric.template, namespace=namespace, name=name, revision=rev, window=window
            )
        assert metric.query is not None  # admission: a Prometheus metric has a template or a query
        variables = {
            "revision": rev,
            "stable_revision": stable,
            "name": name,
            "namespace": namespace,
            "window": window,
        }
        return templates.render(metric.query, variables)

    out = []
    for metric in _prometheus(analysis):
        relative = metric.max_increase_vs_stable is not None or metric.max_drop_vs_stable is not None
        rule = templates.tally_rule(metric.template, metric.max, metric.min)
        tally = (
            templates.tally_queries(rule, namespace=namespace, name=name, revision=revision, window=window)
            if rule is not None
            else None
        )
        out.append(
            MetricQueries(
                metric.name, render(metric, revision), render(metric, stable) if relative else None, tally
            )
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


def _tally(
    prometheus: Prometheus, promql: tuple[str, str]
) -> tuple[stats.Tally | None, RawMeasurement | None]:
    events, failed = _ask(prometheus, promql[0])
    if failed is not None:
        return None, failed
    requests, failed = _ask(prometheus, promql[1])
    if failed is not None or requests is None:
        return None, failed
    return stats.Tally(events or 0.0, requests), None


def _prometheus(analysis: api.Analysis) -> list[api.Metric]:
    return [m for m in analysis.metrics if m.provider == "prometheus"]


def measure(
    config: PrometheusConfig | ConnectionProblem,
    analysis: api.Analysis,
    namespace: str,
    name: str,
    revision: str,
    stable: str,
    read_secret: SecretReader,
) -> dict[str, RawMeasurement]:
    """One round: every metric of `analysis` for `revision`, by metric name. A Prometheus problem
    is an error of the Prometheus metrics only; web metrics do not need Prometheus."""
    variables = {
        "revision": revision,
        "stable_revision": stable,
        "name": name,
        "namespace": namespace,
        "window": runs.window(analysis),
    }
    out = {
        m.name: web.measure(m, variables, stable, read_secret)
        for m in analysis.metrics
        if m.provider == "web"
    }
    if _prometheus(analysis):
        out.update(_measure_prometheus(config, analysis, namespace, name, revision, stable))
    return out


def _measure_prometheus(
    config: PrometheusConfig | ConnectionProblem,
    analysis: api.Analysis,
    namespace: str,
    name: str,
    revision: str,
    stable: str,
) -> dict[str, RawMeasurement]:
    metrics = _prometheus(analysis)
    if isinstance(config, ConnectionProblem):
        return {m.name: RawMeasurement(error=str(config)) for m in metrics}
    try:
        planned, requests_promql = queries(analysis, namespace, name, revision, stable)
    except ValueError as err:  # a custom query with an unknown variable
        return {m.name: RawMeasurement(error=str(err)) for m in metrics}
    prometheus = Prometheus(config)
    try:
        floored = any(floor(m, analysis) for m in metrics)
        requests, failed = _ask(prometheus, requests_promql) if floored else (None, None)
        if failed is not None:
            return {m.name: failed for m in metrics}
        out = {}
        for q in planned:
            value, failed = _ask(prometheus, q.value)
            stable_value = None
            if failed is None and q.stable is not None:
                stable_value, failed = _ask(prometheus, q.stable)
            tally = None
            if failed is None and q.tally is not None:
                tally, failed = _tally(prometheus, q.tally)
            out[q.name] = failed or RawMeasurement(
                value=value, stable_value=stable_value, requests=requests, tally=tally
            )
        return out
    finally:
        prometheus.close()


def experiment(
    config: PrometheusConfig | ConnectionProblem,
    metrics: Sequence[str],
    namespace: str,
    name: str,
    revision: str,
    stable: str,
    window: str,
) -> dict[str, RawMeasurement]:
    """One look of an experiment: what `revision` and `stable` each counted in the last `window`
    (since the experiment began), per metric (`accuracy`: feedback rows correct and in all; `latency`:
    request-duration buckets), as a Sample for `core.experiment`."""
    if isinstance(config, ConnectionProblem):
        return {m: RawMeasurement(error=str(config)) for m in metrics}
    prometheus = Prometheus(config)
    try:
        return {
            m: _experiment_metric(prometheus, m, namespace, name, (revision, stable), window) for m in metrics
        }
    finally:
        prometheus.close()


def _experiment_metric(
    prometheus: Prometheus, metric: str, namespace: str, name: str, revisions: tuple[str, str], window: str
) -> RawMeasurement:
    if metric == "accuracy":
        rule = templates.tally_rule("accuracy", None, None)
        assert rule is not None
        rows = []
        for rev in revisions:
            tally, failed = _tally(
                prometheus,
                templates.tally_queries(rule, namespace=namespace, name=name, revision=rev, window=window),
            )
            if failed is not None:
                return failed
            tally = tally or stats.Tally(0.0, 0.0)  # no series: no feedback yet
            rows.append((tally.requests - tally.events, tally.events))
        return RawMeasurement(sample=abtest.Sample(rows[0], rows[1]))
    buckets = []
    for rev in revisions:
        promql = templates.experiment_latency_query(
            namespace=namespace, name=name, revision=rev, window=window
        )
        try:
            buckets.append(prometheus.query_by(promql, "le"))
        except QueryError as err:
            return RawMeasurement(unreachable=str(err)) if err.unreachable else RawMeasurement(error=str(err))
    return RawMeasurement(sample=abtest.histograms(buckets[0], buckets[1]))


class ScrapeReader:
    """How Prometheus scrapes a revision's pods, from its target metadata (`/api/v1/targets`).

    A target keeps its interval and its phase (Prometheus spreads targets over the interval and
    then scrapes each on a fixed tick), so one read per revision serves for `TTL`: the engine
    projects later scrapes from the last one it saw.
    """

    TTL = 120.0  # seconds

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._seen: dict[tuple[str, str, str], tuple[float, Scrape | None]] = {}

    def read(
        self, config: PrometheusConfig | ConnectionProblem, namespace: str, revision: str
    ) -> Scrape | None:
        if isinstance(config, ConnectionProblem):
            return None
        key, now = (config.address, namespace, revision), self._clock()
        seen = self._seen.get(key)
        if seen is not None and now - seen[0] < self.TTL:
            return seen[1]
        prometheus = Prometheus(config)
        try:
            found = [
                t
                for t in prometheus.targets()
                if t.labels.get("namespace") == namespace and t.labels.get("revision") == revision
            ]
        except QueryError:
            return None  # not known now; ask again on the next pass
        finally:
            prometheus.close()
        scrape = None
        if found:
            newest = max(found, key=lambda t: (t.last is not None, t.last))
            scrape = Scrape(min(t.interval for t in found), newest.last, newest.duration)
        if scrape is not None and scrape.last is not None:
            self._seen[key] = (now, scrape)  # a target not scraped yet is asked for again
        return scrape
