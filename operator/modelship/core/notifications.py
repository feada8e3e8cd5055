"""Notifications, pure: which transition Events are sent where, in which format, how delivery
is retried, and what the `NotificationsDelivered` condition says (docs/notifications.md).

A notification is derived from a transition Event the shell has just created (a phase, a
step, a verdict: `TRIGGERS` maps its reason onto a trigger), so it goes out for exactly the
Events posted, each once, even across an operator crash (`engine.events`). The shell
(`modelship.notify`) queues and sends them off the reconcile path and reports each one's
outcome back as an observation (`Delivery`); `condition` turns those into the condition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, get_args

from modelship import api
from modelship.core.manifests import Owner

SCHEMA = "modelship.io/notification/v1"  # the generic payload's `schema`
CONDITION = "NotificationsDelivered"

# Event reason -> trigger. An abort's Event is named after its reason: those of analysis runs
# (gates.analysis_gate) are AnalysisFailed, every other abort is Aborted; the Event of the run's end
# (`Analysis<phase>`, rollout.measured) comes in the same pass, one notification. Pauses are told by the
# phase Event `Paused` (a pause step, an inconclusive analysis, `modelship pause`), not by
# PauseStarted, so a pause step is one notification.
TRIGGERS: Mapping[str, api.NotificationTrigger] = {
    "RolloutStarted": "RolloutStarted",
    "WeightChanged": "StepCompleted",
    "HeaderRouteSet": "StepCompleted",  # a setHeaderRoute step pins (or unpins) requests by header
    "ShadowSet": "StepCompleted",  # a shadow step starts (or stops) copying requests to the candidate
    "Paused": "Paused",
    "AnalysisFailed": "AnalysisFailed",
    "AnalysisError": "AnalysisFailed",
    "PrometheusUnreachable": "AnalysisFailed",
    "AnalysisUnreachable": "AnalysisFailed",
    "EvaluationFailed": "AnalysisFailed",  # the offline evaluation step's abort
    "ExperimentFailed": "AnalysisFailed",  # an experiment step found the candidate worse
    "ExperimentLost": "AnalysisFailed",  # ... than its challenger
    "Aborted": "Aborted",
    "SmokeTestFailed": "Aborted",
    "LoadTestFailed": "Aborted",
    "ProgressDeadlineExceeded": "Aborted",
    "ModelChecksumMismatch": "Aborted",
    "RolledBack": "RolledBack",
    "Promoted": "Promoted",
    "Healthy": "Healthy",
}
ALL_TRIGGERS: tuple[api.NotificationTrigger, ...] = get_args(api.NotificationTrigger)

# Delivery: the wait after failed attempt n is BACKOFF_BASE * 2**(n-1) seconds, at most BACKOFF_CAP.
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 30.0


class Transition(Protocol):
    """What a notification reads of a transition Event (`engine.Event` is one)."""

    @property
    def type(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def name(self) -> str | None: ...
    @property
    def at(self) -> datetime | None: ...


@dataclass(frozen=True)
class Notification:
    trigger: api.NotificationTrigger
    payload: Mapping[str, Any]  # the generic webhook's JSON (docs/notifications.md); templates read it


@dataclass(frozen=True)
class Delivery:
    """How the last notification to one target went, as the shell observed it."""

    ok: bool
    trigger: str
    attempts: int
    error: str | None = None  # why it failed: never the URL


class TemplateError(ValueError):
    """A webhook `body` that cannot be rendered; the message names the place in it."""


def trigger(reason: str) -> api.NotificationTrigger | None:
    """The trigger an Event of this reason fires, if any."""
    return TRIGGERS.get(reason)


def notifications(
    owner: Owner, events: Sequence[Transition], status: api.ModelDeploymentStatus
) -> tuple[Notification, ...]:
    """The notifications for `events` just posted, in their order, one per trigger (a rollback is
    both its own Event and the phase RolledBack); `status`: the one the pass wrote with them."""
    out: list[Notification] = []
    seen: set[str] = set()
    for event in events:
        fired = trigger(event.reason)
        if fired is None or fired in seen:
            continue
        seen.add(fired)
        out.append(Notification(fired, payload(owner, fired, event, status)))
    return tuple(out)


def payload(
    owner: Owner, fired: api.NotificationTrigger, event: Transition, status: api.ModelDeploymentStatus
) -> dict[str, Any]:
    """The generic payload, schema `SCHEMA` (docs/notifications.md)."""
    aborted = status.aborted
    canary = status.canary
    return {
        "schema": SCHEMA,
        "trigger": fired,
        "event": {
            "reason": event.reason,
            "type": event.type,
            "message": event.message,
            "name": event.name,
            "time": _time(event.at),
        },
        "modelDeployment": {"namespace": owner.namespace, "name": owner.name, "uid": owner.uid},
        "rollout": {
            "phase": status.phase,
            "stableRevision": status.stable_revision,
            "newRevision": status.rolling or (aborted.revision if aborted else None),
            "weight": status.new_revision_weight,
            "step": canary.step if canary else None,
        },
    }


def wants(target: api.NotificationTarget, fired: str) -> bool:
    return target.triggers is None or fired in target.triggers


def render(target: api.NotificationTarget, notification: Notification) -> dict[str, Any]:
    """The JSON body sent to `target`. TemplateError for a `body` that cannot be rendered."""
    if target.type == "slack":
        return slack(notification.payload)
    if target.type == "teams":
        return teams(notification.payload)
    if target.body is not None:
        rendered: dict[str, Any] = _fill(target.body, notification.payload, "body")
        return rendered
    return dict(notification.payload)


_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.]*)\s*\}\}")


def _fill(node: Any, values: Mapping[str, Any], where: str) -> Any:
    """`node` with every `{{path}}` in its strings replaced from `values`; a string that is one
    placeholder alone becomes the value itself (a number stays a number)."""
    if isinstance(node, dict):
        return {k: _fill(v, values, f"{where}.{k}") for k, v in node.items()}
    if isinstance(node, list):
        return [_fill(v, values, f"{where}[{i}]") for i, v in enumerate(node)]
    if not isinstance(node, str):
        return node
    whole = _PLACEHOLDER.fullmatch(node)
    if whole is not None:
        return _lookup(values, whole.group(1), where)
    rendered = _PLACEHOLDER.sub(lambda m: _text(_lookup(values, m.group(1), where)), node)
    if "{{" in rendered or "}}" in rendered:
        raise TemplateError(f"{where}: an unclosed or malformed {{{{...}}}} placeholder in {node!r}")
    return rendered


def _lookup(values: Mapping[str, Any], path: str, where: str) -> Any:
    node: Any = values
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise TemplateError(
                f"{where}: unknown variable {{{{{path}}}}}; known: {', '.join(variables(values))}"
            )
        node = node[part]
    return node


def variables(values: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every `{{path}}` a body template may use."""
    out: list[str] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.extend(variables(value, f"{prefix}{key}."))
        else:
            out.append(f"{prefix}{key}")
    return out


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _summary(p: Mapping[str, Any]) -> tuple[str, str, str]:
    """(headline, message, facts) for a chat message."""
    md, rollout, event = p["modelDeployment"], p["rollout"], p["event"]
    headline = f"{p['trigger']}: {md['namespace']}/{md['name']}"
    facts = [f"phase {rollout['phase']}", f"stable {rollout['stableRevision']}"]
    if rollout["newRevision"]:
        facts.append(f"new {rollout['newRevision']} at {rollout['weight']}%")
    return headline, event["message"], " · ".join(facts)


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn control characters (its docs ask for these three escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack(p: Mapping[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message: `text` for notifications, blocks for the channel."""
    headline, message, facts = (_slack_escape(x) for x in _summary(p))
    warning = p["event"]["type"] == "Warning"
    return {
        "text": f"{headline}: {message}",
        "blocks": [
            {
                "type": "section",
                "text": {
                    "type": "mrkdwn",
                    "text": f"{':warning: ' if warning else ''}*{headline}*\n{message}",
                },
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": facts}]},
        ],
    }


def teams(p: Mapping[str, Any]) -> dict[str, Any]:
    """A Microsoft Teams message carrying an Adaptive Card (Teams' incoming webhooks and Workflows)."""
    headline, message, _ = _summary(p)
    rollout, event = p["rollout"], p["event"]
    facts = [
        {"title": "Phase", "value": _text(rollout["phase"])},
        {"title": "Stable revision", "value": _text(rollout["stableRevision"])},
    ]
    if rollout["newRevision"]:
        facts += [
            {"title": "New revision", "value": rollout["newRevision"]},
            {"title": "Weight", "value": f"{rollout['weight']}%"},
        ]
    facts.append({"title": "Event", "value": f"{event['reason']} ({event['type']})"})
    card = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": headline,
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
                "color": "Attention" if event["type"] == "Warning" else "Default",
            },
            {"type": "TextBlock", "text": message, "wrap": True},
            {"type": "FactSet", "facts": facts},
        ],
    }
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt `attempt` (1-based) before the next one."""
    return float(min(BACKOFF_BASE_SECONDS * 2 ** (attempt - 1), BACKOFF_CAP_SECONDS))


def schedule(max_attempts: int) -> tuple[float, ...]:
    """The waits between `max_attempts` attempts: 1s, 2s, 4s, ... capped."""
    return tuple(backoff(n) for n in range(1, max_attempts))


def retryable(status: int | None) -> bool:
    """Whether a failed attempt is worth repeating: no answer (a timeout, a refused connection),
    a server error, 408 or 429. Any other 4xx will be refused again."""
    return status is None or status >= 500 or status in (408, 429)


def condition(results: Mapping[str, Delivery]) -> dict[str, api.ConditionValue]:
    """`NotificationsDelivered` from the last delivery to each target (none observed: no change)."""
    if not results:
        return {}
    failed = [(name, d) for name, d in sorted(results.items()) if not d.ok]
    if not failed:
        n = len(results)
        return {CONDITION: ("True", "Delivered", f"the last notification to each of {n} target(s) arrived")}
    message = "; ".join(
        f"target {name}: {d.trigger} not delivered after {d.attempts} attempt(s): {d.error}"
        for name, d in failed
    )
    return {CONDITION: ("False", "DeliveryFailed", message[:1024])}


def _time(at: datetime | None) -> str | None:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ") if at is not None else None
