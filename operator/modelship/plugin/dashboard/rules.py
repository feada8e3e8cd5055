"""What the dashboard shows, pure: a list row, the last verdict, why a rollout ended (one
sentence), the step timeline, the analysis marks with their limits, a weight point, the pods of
each revision. Functions of the objects read and `now`; the server only fetches and sends.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

from modelship import api
from modelship.core.analysis import templates
from modelship.plugin.table import age

Json = dict[str, Any]


def _spec_status(obj: Json) -> tuple[api.ModelDeploymentSpec, api.ModelDeploymentStatus]:
    spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
    return spec, api.read_status(obj.get("status"), spec)


def _stamp(moment: datetime | None) -> str | None:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def limit(spec: api.ModelDeploymentSpec, metric: str) -> str:
    """The limits spec.analysis sets on `metric`, as people write them: `max 0.01`, `min 0.9,
    drop vs stable <= 0.02`; empty when it sets none (a job metric, an experiment's)."""
    found = next((m for m in (spec.analysis.metrics if spec.analysis else []) if m.name == metric), None)
    if found is None:
        return ""
    parts = [
        f"{word} {value:g}" for word, value in (("min", found.min), ("max", found.max)) if value is not None
    ]
    if found.max_drop_vs_stable is not None:
        parts.append(f"drop vs stable <= {found.max_drop_vs_stable:g}")
    if found.max_increase_vs_stable is not None:
        parts.append(f"increase vs stable <= {found.max_increase_vs_stable:g}")
    return ", ".join(parts)


def marks(spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus) -> list[Json]:
    """Every measurement status keeps, oldest first: when, which run and metric, value, limit,
    verdict and message; what the timeline marks."""
    out = [
        {
            "at": _stamp(m.measured_at),
            "run": run.kind,
            "step": run.step,
            "revision": run.revision,
            "metric": metric.name,
            "value": m.value,
            "stableValue": m.stable_value,
            "limit": limit(spec, metric.name),
            "verdict": m.verdict,
            "message": m.message,
        }
        for run in status.analysis or []
        for metric in run.metrics
        for m in metric.measurements
    ]
    return sorted(out, key=lambda x: x["at"] or "")


def _mark_text(mark: Json) -> str:
    value = f" = {mark['value']:g}" if mark["value"] is not None else ""
    bound = f" ({mark['limit']})" if mark["limit"] else ""
    return f"{mark['verdict']}: {mark['metric']}{value}{bound}"


def last_verdict(spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus) -> str:
    """The newest judgement: the latest measurement (`Failed: error-rate = 0.2 (max 0.01)`), else
    the newest analysis run's phase, else the smoke test's outcome; empty when nothing was judged."""
    seen = marks(spec, status)
    if seen:
        return _mark_text(seen[-1])
    runs = sorted(status.analysis or [], key=lambda r: r.started_at)
    if runs:
        return f"{runs[-1].kind} {runs[-1].phase}"
    if status.smoke_test is not None:
        return "smoke test " + ("passed" if status.smoke_test.passed else "failed")
    return ""


def why(obj: Json) -> str | None:
    """One sentence on why a rollout did not finish (aborted, rolled back, Degraded), with the
    failed measurement when the reason names none; None for any other state."""
    spec, status = _spec_status(obj)
    failed = [m for m in marks(spec, status) if m["verdict"] == "Failed"]
    evidence = f" Last failed measurement: {_mark_text(failed[-1])}." if failed else ""
    if status.aborted is not None:
        a = status.aborted
        reason = f" ({a.reason})" if a.reason else ""
        said = f": {a.message.rstrip('.')}" if a.message else ""
        return f"Revision {a.revision} was aborted{reason}{said}.{evidence if not a.message else ''}"
    if status.rolled_back is not None:
        return (
            f"Revision {status.rolled_back.revision} was rolled back: the spec went back to the stable "
            f"revision {status.stable_revision or '-'}."
        )
    if status.phase == "Degraded":
        progressing = next((c for c in status.conditions or [] if c.type == "Progressing"), None)
        said = (
            progressing.message.rstrip(".") if progressing and progressing.message else "no reason recorded"
        )
        return f"Degraded: {said}.{evidence}"
    return None


def row(obj: Json, now: datetime) -> Json:
    """One line of the list: what `kubectl get modeldeployments -o wide` shows, and the last verdict."""
    spec, status = _spec_status(obj)
    meta = obj["metadata"]
    canary, bg = status.canary, status.blue_green
    steps = len(spec.strategy.steps)
    return {
        "namespace": meta["namespace"],
        "name": meta["name"],
        "phase": status.phase or "Unknown",
        "stable": status.stable_revision,
        "candidate": canary.revision if canary else bg.revision if bg else None,
        "weight": status.new_revision_weight,
        "actualWeight": status.new_revision_actual_weight,
        # An experiment's second candidate while it runs: {revision, weight}.
        "challenger": api.dump(canary.challenger) if canary and canary.challenger else None,
        "step": f"{canary.step}/{steps}" if canary else bg.phase if bg else None,
        "age": age(now - datetime.fromisoformat(meta["creationTimestamp"])),
        "lastVerdict": last_verdict(spec, status),
        "why": why(obj),
        "resourceVersion": meta.get("resourceVersion"),
    }


def _step_label(step: api.CanaryStep) -> str:
    shown = api.dump(step)
    kind, body = next(iter(shown.items()))
    if kind == "setWeight":
        return f"weight {body}%"
    if kind == "pause":
        return f"pause {body['duration']}" if body.get("duration") else "pause until promoted"
    return kind


def timeline(obj: Json, now: datetime) -> list[Json]:
    """The canary steps, each done, current or next (all `idle` with no canary in flight); a
    timed pause that is current says how long is left."""
    spec, status = _spec_status(obj)
    canary = status.canary
    out = []
    for i, step in enumerate(spec.strategy.steps):
        state = (
            "idle"
            if canary is None
            else "done"
            if i < canary.step
            else "current"
            if i == canary.step
            else "next"
        )
        item: Json = {"index": i, "label": _step_label(step), "state": state, "remaining": None}
        if state == "current" and step.pause and step.pause.duration and canary and canary.pause_start_time:
            left = api.parse_duration(step.pause.duration) - (now - canary.pause_start_time)
            item["remaining"] = max(0, int(left.total_seconds()))
        out.append(item)
    return out


def weight_point(obj: Json, at: datetime) -> Json:
    """The weights at `at` (when this version of the object was seen): the new revision's asked-for
    and actual percent, the rest stable's (less an experiment's challenger's)."""
    _, status = _spec_status(obj)
    rival = status.canary.challenger if status.canary is not None else None
    return {
        "at": _stamp(at),
        "weight": status.new_revision_weight,
        "actualWeight": status.new_revision_actual_weight,
        "stable": 100 - status.new_revision_actual_weight - (rival.weight if rival is not None else 0),
    }


REVISION_LABEL = "modelship.io/revision"


def pods(items: list[Json]) -> dict[str, list[Json]]:
    """Pods by revision label: name, phase, ready, restarts."""
    out: dict[str, list[Json]] = {}
    for pod in items:
        revision = (pod["metadata"].get("labels") or {}).get(REVISION_LABEL, "-")
        containers = (pod.get("status") or {}).get("containerStatuses") or []
        out.setdefault(revision, []).append(
            {
                "name": pod["metadata"]["name"],
                "phase": (pod.get("status") or {}).get("phase", "Unknown"),
                "ready": bool(containers) and all(c.get("ready") for c in containers),
                "restarts": sum(int(c.get("restartCount") or 0) for c in containers),
            }
        )
    return out


def events(items: list[Json]) -> list[Json]:
    """The Events about the object, newest last: time, type, reason, message, count."""
    shown = [
        {
            "at": e.get("lastTimestamp")
            or e.get("eventTime")
            or (e.get("metadata") or {}).get("creationTimestamp"),
            "type": e.get("type", ""),
            "reason": e.get("reason", ""),
            "message": e.get("message", ""),
            "count": e.get("count") or 1,
        }
        for e in items
    ]
    return sorted(shown, key=lambda e: e["at"] or "")


def detail(
    obj: Json, event_items: list[Json], pod_items: list[Json], history: list[Json], now: datetime
) -> Json:
    """Everything the rollout page shows, in one document."""
    spec, status = _spec_status(obj)
    return {
        **row(obj, now),
        "strategy": "canary" if spec.strategy.steps else "blueGreen",
        "router": spec.traffic.router,
        "paused": status.pause is not None,
        "timeline": timeline(obj, now),
        "weights": history,
        "marks": marks(spec, status),
        "runs": [
            {"kind": r.kind, "revision": r.revision, "step": r.step, "phase": r.phase, "message": r.message}
            for r in status.analysis or []
        ],
        "smokeTest": api.dump(status.smoke_test) if status.smoke_test else None,
        "conditions": [api.dump(c) for c in status.conditions or []],
        "events": events(event_items),
        "pods": pods(pod_items),
    }


# The per-revision charts: (builtin template, or "requests" for the request count, and title). The
# PromQL is the analysis' own (modelship.core.analysis.templates), so a chart and a verdict agree.
CHARTS: tuple[tuple[str, str], ...] = (
    ("requests", "requests per minute"),
    ("error-rate", "error rate"),
    ("latency-p50", "p50 latency (s)"),
    ("latency-p99", "p99 latency (s)"),
    ("accuracy", "accuracy (feedback)"),
    ("confidence-mean", "mean confidence"),
)
CHART_POINTS = 120  # at most this many points per series: a step of window / 120, at least 5 s
_LONGEST = timedelta(hours=6)
_SHORTEST = timedelta(minutes=2)
_NOTHING_YET = timedelta(minutes=15)  # no rollout seen: the recent past


def revisions(obj: Json) -> list[tuple[str, str]]:
    """(role, revision) of the stable revision and the candidate (canary, preview, or the one
    aborted or rolled back), those there are."""
    _, status = _spec_status(obj)
    candidate = status.canary or status.blue_green or status.aborted or status.rolled_back
    out = [("stable", status.stable_revision)] if status.stable_revision else []
    return out + ([("candidate", candidate.revision)] if candidate is not None else [])


def chart_window(obj: Json, history: list[Json], now: datetime) -> tuple[datetime, datetime, int]:
    """(start, end, step seconds) of the charts: from the rollout's first sign (its first analysis
    run, or the first weight the dashboard saw) to now, else the last 15 minutes; at least the last
    2 minutes (a minute of data would fill the chart), at most the last 6 hours."""
    _, status = _spec_status(obj)
    starts = [r.started_at for r in status.analysis or []]
    starts += [datetime.fromisoformat(p["at"]) for p in history[:1]]
    start = min(starts) if starts else now - _NOTHING_YET
    start = max(min(start, now - _SHORTEST), now - _LONGEST)
    step = max(5, int((now - start).total_seconds()) // CHART_POINTS)
    # A whole number of steps back from now: a range query's last point is then now itself.
    steps = math.ceil((now - start).total_seconds() / step)
    return now - timedelta(seconds=steps * step), now, step


def chart_queries(obj: Json) -> list[Json]:
    """One PromQL per chart and revision: {chart, title, role, revision, promql}."""
    meta = obj["metadata"]
    window = "1m"  # a per-minute count; rates over the last minute at each point
    out = []
    for chart, title in CHARTS:
        for role, revision in revisions(obj):
            where = {
                "namespace": meta["namespace"],
                "name": meta["name"],
                "revision": revision,
                "window": window,
            }
            promql = (
                templates.requests_query(**where)
                if chart == "requests"
                else templates.template_query(chart, **where)
            )
            out.append({"chart": chart, "title": title, "role": role, "revision": revision, "promql": promql})
    return out
