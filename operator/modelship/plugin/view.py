"""The status view, pure: one screen about a ModelDeployment, most important first, and the
verdict a CI gate exits with (Healthy, Degraded, RolledBack, or not done yet)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelship import api
from modelship.core import gateway

# Exit codes (documented in `modelship.plugin.args.EXIT_CODES` and docs/plugin.md).
OK, FAILED, USAGE, TIMEOUT, ERROR = 0, 1, 2, 3, 4
DONE_PHASES = ("Healthy", "Degraded", "RolledBack")


def render(obj: dict[str, Any], events: list[dict[str, Any]]) -> str:
    """The status view: one screen, most important first."""
    spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
    status = api.read_status(obj.get("status"), spec)
    steps = spec.strategy.steps
    lines = [
        f"Name:       {obj['metadata']['name']}",
        f"Namespace:  {obj['metadata']['namespace']}",
        f"Phase:      {status.phase or 'Unknown'}",
        f"Strategy:   {'canary, ' + str(len(steps)) + ' steps' if steps else 'blueGreen'}"
        f" ({spec.traffic.router} router)",
        f"Stable:     {status.stable_revision or '-'} "
        f"({status.available_replicas or 0}/{spec.replicas} available)",
    ]
    lines += _sessions(spec.traffic.session_affinity)
    if status.pause is not None:
        at = f" at {_stamp(status.pause.at)}" if status.pause.at else ""
        lines.append(f"Paused:     by {status.pause.by}{at} (`kubectl modelship resume` continues)")
    if status.canary is not None:
        step, weight = status.canary.step, status.canary.weight
        actual = status.new_revision_actual_weight
        asked = f" (steps ask for {weight}%)" if actual != weight else ""
        current = api.dump(steps[step]) if step < len(steps) else {"promote": "waiting for all replicas"}
        rival = status.canary.challenger
        beside = f" / {rival.weight}% challenger" if rival is not None else ""
        rest = 100 - actual - (rival.weight if rival is not None else 0)
        lines += [
            f"Canary:     {status.canary.revision}",
            f"Weight:     {actual}% canary{beside} / {rest}% stable{asked}",
            f"Step:       {step}/{len(steps)}  {current}",  # steps done, as the STEP column
        ]
        if rival is not None:
            service = gateway.challenger_service(obj["metadata"]["name"])
            lines.append(f"Challenger: {rival.revision} ({service}, the experiment's second candidate)")
        for route in status.canary.header_routes or []:
            lines.append(f"Header route: {route.name}: {route.shown} -> {obj['metadata']['name']}-canary")
        if status.canary.shadow_percent:
            copied = f"{status.canary.shadow_percent}% of stable's requests"
            lines.append(f"Shadow:     {copied} copied to {obj['metadata']['name']}-canary")
    if status.blue_green is not None:
        lines += [
            f"Preview:    {status.blue_green.revision}",
            f"Switch:     {status.blue_green.phase}",
        ]
    if status.smoke_test is not None:
        verdict = "passed" if status.smoke_test.passed else "FAILED"
        lines.append(f"Smoke test: {verdict}: {status.smoke_test.message}")
    for run in status.analysis or []:
        what = f"step {run.step + 1}" if run.step is not None else run.kind
        against = f" against challenger {run.baseline}" if run.baseline else ""
        lines.append(f"Analysis:   {what} of {run.revision}{against}: {run.phase}")
        if run.kind == "experiment" and run.phase == "Running":  # what it has counted, when it decides
            lines.append(f"  {run.message}")
        for m in run.metrics:
            last = m.measurements[-1] if m.measurements else None
            seen = f"{last.verdict}: {last.message}" if last else "not measured yet"
            lines.append(
                f"  {m.name:<16} {m.successful} ok, {m.failed} failed, {m.inconclusive} inconclusive; {seen}"
            )
    if status.aborted is not None:
        why = f"{status.aborted.reason}: " if status.aborted.reason else ""
        lines.append(
            f"Aborted:    {status.aborted.revision} ({why}`kubectl modelship retry` starts it again)"
        )
    if status.rolled_back is not None:
        lines.append(
            f"Rolled back: {status.rolled_back.revision} (the spec went back to the stable revision)"
        )
    if status.scale_down_revision and status.scale_down_at:
        lines.append(f"Old:        {status.scale_down_revision} (deleted at {_stamp(status.scale_down_at)})")
    lines.append("Conditions:")
    for c in status.conditions or []:
        lines.append(f"  {c.type}={c.status}  {c.reason}: {c.message}")
    lines.append("Events:")
    for e in sorted(events, key=lambda e: e.get("lastTimestamp") or "")[-8:]:
        stamp, kind = e.get("lastTimestamp", ""), e.get("type", "")
        times = f" (x{e['count']})" if (e.get("count") or 1) > 1 else ""  # a repeat's series
        lines.append(f"  {stamp}  {kind}  {e.get('reason', '')}: {e.get('message', '')}{times}")
    return "\n".join(lines)


def _sessions(affinity: api.SessionAffinity | None) -> list[str]:
    """The sticky-sessions line, if the spec asks for them."""
    if affinity is not None and affinity.cookie is not None:
        how = f"cookie {affinity.cookie.name}"
    elif affinity is not None and affinity.header is not None:
        how = f"header {affinity.header.name}"
    else:
        return []
    return [f"Sessions:   sticky by {how} (a client stays on the revision that first served it)"]


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def done(obj: dict[str, Any]) -> bool:
    """The rollout is over: the operator has seen the latest spec, and the phase is final with no
    canary or preview in flight (an aborted or rolled-back one is over)."""
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    generation = obj.get("metadata", {}).get("generation")
    seen = generation is None or (status.get("observedGeneration") or 0) >= generation
    final = status.get("phase") in DONE_PHASES and not (rollout.get("canary") or rollout.get("blueGreen"))
    return seen and final


@dataclass(frozen=True)
class Verdict:
    code: int  # OK or FAILED
    reason: str  # one line, for a CI log


def verdict(obj: dict[str, Any]) -> Verdict | None:
    """How a finished rollout exits: OK when Healthy, FAILED when Degraded or RolledBack, with why;
    None while it is not done."""
    if not done(obj):
        return None
    status = obj.get("status") or {}
    rollout = status.get("rollout") or {}
    name, phase = obj["metadata"]["name"], status["phase"]
    if phase == "Healthy":
        return Verdict(OK, f"{name} is Healthy: revision {status.get('stableRevision') or '-'} serves")
    why: list[str] = []
    for shape in ("aborted", "rolledBack"):
        state = rollout.get(shape) or {}
        if state:
            what = "aborted" if shape == "aborted" else "rolled back"
            said = ": ".join(state[k] for k in ("reason", "message") if state.get(k))
            reason = f" ({said})" if said else ""
            why.append(f"revision {state.get('revision')} {what}{reason}")
    for c in status.get("conditions") or []:
        if c.get("type") == "Progressing" and c.get("message"):
            why.append(c["message"])
    return Verdict(FAILED, f"{name} is {phase}: " + ("; ".join(why) or "no reason recorded"))
