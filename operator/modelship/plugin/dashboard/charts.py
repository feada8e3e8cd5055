"""The rollout page's Prometheus charts: the range queries `rules.chart_queries` names, against
the Prometheus the ModelDeployment's analysis uses (spec.analysis.prometheus, its auth Secret read
with the caller's credentials), else the dashboard's `--prometheus-address` (the operator's
default, `MODELSHIP_PROMETHEUS_ADDRESS`). Read when the page asks, on its timer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelship import api
from modelship.analysis.measure import ConnectionProblem, Defaults, connection
from modelship.analysis.prometheus import Prometheus, PrometheusConfig, QueryError
from modelship.kube.storage import Storage
from modelship.plugin.dashboard import rules


def config(kube: Storage, obj: dict[str, Any], default_address: str | None) -> PrometheusConfig:
    """The Prometheus to ask; ConnectionProblem naming the field or flag when there is none."""
    spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
    if spec.analysis is not None:
        defaults = Defaults(address=default_address)
        return connection(spec.analysis, obj["metadata"]["namespace"], defaults, kube.read_secret)
    if not default_address:
        raise ConnectionProblem(
            "no Prometheus to chart: the ModelDeployment has no spec.analysis.prometheus, and the dashboard "
            "was started without --prometheus-address"
        )
    try:
        return PrometheusConfig(default_address)
    except ValueError as err:
        raise ConnectionProblem(f"--prometheus-address: {err}") from None


def read(
    kube: Storage, obj: dict[str, Any], history: list[dict[str, Any]], default_address: str | None
) -> dict[str, Any]:
    """{address, start, end, step, charts: [{chart, title, series: [{role, revision, points}]}],
    problem}: what could not be read is said in `problem` (and per series), never raised."""
    start, end, step = rules.chart_window(obj, history, datetime.now(UTC))
    out: dict[str, Any] = {"start": start.isoformat(), "end": end.isoformat(), "step": step, "charts": []}
    try:
        prometheus = Prometheus(config(kube, obj, default_address))
    except ConnectionProblem as err:
        return {**out, "address": None, "problem": str(err)}
    out["address"], out["problem"] = prometheus.config.address, None
    charts: dict[str, dict[str, Any]] = {}
    try:
        for q in rules.chart_queries(obj):
            chart = charts.setdefault(q["chart"], {"chart": q["chart"], "title": q["title"], "series": []})
            series = {"role": q["role"], "revision": q["revision"], "points": [], "problem": None}
            try:
                series["points"] = prometheus.query_range(q["promql"], start, end, step)
            except QueryError as err:
                series["problem"] = str(err)
                if err.unreachable:  # the rest would wait as long: say it once
                    out["problem"] = str(err)
                    break
            chart["series"].append(series)
    finally:
        prometheus.close()
    out["charts"] = list(charts.values())
    return out
