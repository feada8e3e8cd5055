"""Notifications: the trigger of each Event, the payloads (generic, body template, Slack, Teams),
the backoff schedule, the NotificationsDelivered condition, and the delivery loop's retries
(`notify.delivery`, with a send function standing in for the network; tests/integration sends
over real HTTP)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from modelship import api, cli, metrics
from modelship.core import engine, gates, notifications
from modelship.core.notifications import Delivery, Notification, TemplateError
from modelship.notify import delivery, webhook

from .enginesim import OWNER, T0, command
from .test_analysis_engine import BAD_ERRORS, with_analysis
from .test_canary import NEW_IMAGE, canary_spec, stable_world, step

pytestmark = pytest.mark.unit

URL = "https://hooks.example/services/T000/B000/very-secret-token"


def target(**fields: Any) -> api.NotificationTarget:
    base: dict[str, Any] = {
        "name": "oncall",
        "type": "webhook",
        "urlFrom": {"secretKeyRef": {"name": "hook", "key": "url"}},
    }
    return api.NotificationTarget.model_validate(base | fields)


def triggers(events: list[engine.Event], status: api.ModelDeploymentStatus | None = None) -> list[str]:
    found = notifications.notifications(OWNER, events, status or api.ModelDeploymentStatus())
    return [n.trigger for n in found]


# ---- which Events are notified ----------------------------------------------------------------


def test_every_trigger_is_fired_by_some_event_reason() -> None:
    assert set(notifications.TRIGGERS.values()) == set(notifications.ALL_TRIGGERS)


def test_an_analysis_run_that_aborts_is_analysis_failed_and_other_aborts_are_aborted() -> None:
    for reason in (*gates._ABORT_REASONS.values(), *gates._EVALUATION_ABORT_REASONS.values()):
        assert notifications.trigger(reason) == "AnalysisFailed", reason
    for reason in ("Aborted", "SmokeTestFailed", "ProgressDeadlineExceeded", "ModelChecksumMismatch"):
        assert notifications.trigger(reason) == "Aborted", reason


def test_steps_pauses_and_repeats_that_are_not_notified() -> None:
    # A pause is told once, by the phase Event; an analysis round and housekeeping are not told.
    for reason in (
        "PauseStarted",
        "AnalysisMeasured",
        "AnalysisStarted",
        "ScaledDown",
        "Progressing",
        "Degraded",
    ):
        assert notifications.trigger(reason) is None, reason


def test_a_canary_rollout_notifies_started_steps_pause_promoted_and_healthy_in_order() -> None:
    old = canary_spec()
    world = stable_world(old)
    world.events.clear()
    new = canary_spec(NEW_IMAGE)
    step(world, new)  # 20%, then a 2s pause
    world.tick(5)
    step(world, new)  # 50%, then pause{}
    new, world.status = command("promote", new, world.status)
    step(world, new)
    step(world, new)
    fired = [notifications.trigger(e.reason) for e in world.events]
    assert [t for t in fired if t] == [
        "RolloutStarted",
        "StepCompleted",
        "Paused",
        "StepCompleted",
        "Paused",
        "Promoted",
        "Healthy",
    ]


def test_a_rollback_told_by_two_events_of_one_pass_is_one_notification() -> None:
    old = canary_spec()
    world = stable_world(old)
    step(world, canary_spec(NEW_IMAGE))
    decision = world.reconcile(old)  # the image reverted mid-rollout
    assert [e.reason for e in decision.events].count("RolledBack") == 2  # its Event and the phase's
    assert triggers(list(decision.events), decision.status) == ["RolledBack"]


def test_a_failed_analysis_is_one_analysis_failed_notification() -> None:
    service = {"router": "service"}
    world = stable_world(with_analysis(traffic=service))
    new = with_analysis(NEW_IMAGE, traffic=service)
    step(world, new)
    world.metrics["errors"] = BAD_ERRORS
    world.tick(5)
    decision = world.decide(new)
    assert decision.status.phase == "Degraded"
    reasons = [e.reason for e in decision.events if e.series is None]
    assert reasons.count("AnalysisFailed") == 2  # the run's end and the abort
    assert triggers(list(decision.events), decision.status) == ["AnalysisFailed"]


def test_an_abort_by_hand_is_aborted() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("abort", new, world.status)
    decision = world.reconcile(new)
    assert triggers(list(decision.events), decision.status) == ["Aborted"]


# ---- payloads ---------------------------------------------------------------------------------


def promoted() -> Notification:
    status = api.ModelDeploymentStatus.model_validate(
        {"phase": "Healthy", "stableRevision": "fraud-1a2b3c4d5e"}
    )
    event = engine.Event(
        "Normal",
        "Promoted",
        "revision fraud-1a2b3c4d5e promoted <to> stable & more",
        name="fraud.0011",
        at=T0,
    )
    (found,) = notifications.notifications(OWNER, [event], status)
    return found


def aborted() -> Notification:
    status = api.ModelDeploymentStatus.model_validate(
        {
            "phase": "Degraded",
            "stableRevision": "fraud-1111111111",
            "rollout": {"aborted": {"revision": "fraud-2222222222", "reason": "AnalysisFailed"}},
        }
    )
    event = engine.Event(
        "Warning", "AnalysisFailed", "step 3/4: error-rate 0.2 > 0.01", name="fraud.0022", at=T0
    )
    (found,) = notifications.notifications(OWNER, [event], status)
    return found


def test_the_generic_payload_follows_its_documented_schema() -> None:
    assert notifications.render(target(), aborted()) == {
        "schema": "modelship.io/notification/v1",
        "trigger": "AnalysisFailed",
        "event": {
            "reason": "AnalysisFailed",
            "type": "Warning",
            "message": "step 3/4: error-rate 0.2 > 0.01",
            "name": "fraud.0022",
            "time": "2026-01-01T00:00:00Z",
        },
        "modelDeployment": {"namespace": "ml", "name": "fraud", "uid": OWNER.uid},
        "rollout": {
            "phase": "Degraded",
            "stableRevision": "fraud-1111111111",
            "newRevision": "fraud-2222222222",
            "weight": 0,
            "step": None,
        },
    }


def test_the_payload_schema_in_the_docs_names_every_variable() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text()
    for variable in notifications.variables(promoted().payload):
        assert f"`{variable}`" in doc, variable


def test_a_body_template_is_filled_from_the_payload_and_keeps_a_whole_value_typed() -> None:
    body = {
        "summary": "{{modelDeployment.name}}: {{ trigger }} ({{event.type}})",
        "weight": "{{rollout.weight}}",
        "tags": ["modelship", "{{rollout.phase}}"],
        "fixed": 3,
    }
    assert notifications.render(target(body=body), aborted()) == {
        "summary": "fraud: AnalysisFailed (Warning)",
        "weight": 0,
        "tags": ["modelship", "Degraded"],
        "fixed": 3,
    }


def test_a_body_template_with_an_unknown_variable_names_where_and_what_is_known() -> None:
    with pytest.raises(TemplateError) as err:
        notifications.render(target(body={"blocks": [{"text": "{{revision}}"}]}), aborted())
    assert "body.blocks[0].text: unknown variable {{revision}}" in str(err.value)
    assert "rollout.newRevision" in str(err.value)


def test_a_body_template_with_a_broken_placeholder_is_refused() -> None:
    with pytest.raises(TemplateError, match=r"body\.text: an unclosed or malformed"):
        notifications.render(target(body={"text": "{{trigger"}), aborted())


def test_slack_gets_an_incoming_webhook_message_with_its_control_characters_escaped() -> None:
    message = notifications.render(target(type="slack"), promoted())
    assert message["text"] == (
        "Promoted: ml/fraud: revision fraud-1a2b3c4d5e promoted &lt;to&gt; stable &amp; more"
    )
    section, context = message["blocks"]
    assert section == {
        "type": "section",
        "text": {
            "type": "mrkdwn",
            "text": "*Promoted: ml/fraud*\nrevision fraud-1a2b3c4d5e promoted &lt;to&gt; stable &amp; more",
        },
    }
    assert context["elements"][0]["text"] == "phase Healthy · stable fraud-1a2b3c4d5e"
    warned = notifications.render(target(type="slack"), aborted())
    assert warned["blocks"][0]["text"]["text"].startswith(":warning: *AnalysisFailed: ml/fraud*")


def test_teams_gets_an_adaptive_card() -> None:
    message = notifications.render(target(type="teams"), aborted())
    assert message["type"] == "message"
    (attachment,) = message["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert (card["type"], card["version"]) == ("AdaptiveCard", "1.4")
    title, text, facts = card["body"]
    assert (title["text"], title["color"]) == ("AnalysisFailed: ml/fraud", "Attention")
    assert text["text"] == "step 3/4: error-rate 0.2 > 0.01"
    assert {f["title"]: f["value"] for f in facts["facts"]} == {
        "Phase": "Degraded",
        "Stable revision": "fraud-1111111111",
        "New revision": "fraud-2222222222",
        "Weight": "0%",
        "Event": "AnalysisFailed (Warning)",
    }


def test_a_body_is_for_generic_webhooks_only() -> None:
    # The API server refuses it by CEL (crds/); the rule is in the schema pydantic generates.
    schema = api.NotificationTarget.model_json_schema(by_alias=True)
    rules = [r["rule"] for r in schema["x-kubernetes-validations"]]
    assert "!has(self.body) || self.type == 'webhook'" in rules


def test_a_target_wants_its_triggers_or_by_default_all() -> None:
    assert all(notifications.wants(target(), t) for t in notifications.ALL_TRIGGERS)
    picky = target(triggers=["AnalysisFailed", "Aborted"])
    assert [t for t in notifications.ALL_TRIGGERS if notifications.wants(picky, t)] == [
        "AnalysisFailed",
        "Aborted",
    ]


# ---- delivery rules ---------------------------------------------------------------------------


def test_the_backoff_doubles_from_one_second_up_to_its_cap() -> None:
    assert notifications.schedule(4) == (1.0, 2.0, 4.0)
    assert notifications.schedule(1) == ()
    assert notifications.schedule(10)[-3:] == (30.0, 30.0, 30.0)


def test_only_no_answer_server_errors_408_and_429_are_retried() -> None:
    assert [s for s in (None, 400, 401, 404, 408, 429, 500, 503) if notifications.retryable(s)] == [
        None,
        408,
        429,
        500,
        503,
    ]


def test_the_condition_names_each_failing_target_and_its_error() -> None:
    assert notifications.condition({}) == {}
    ok = Delivery(True, "Promoted", 1)
    assert notifications.condition({"oncall": ok}) == {
        "NotificationsDelivered": (
            "True",
            "Delivered",
            "the last notification to each of 1 target(s) arrived",
        )
    }
    failed = Delivery(False, "AnalysisFailed", 4, "HTTP 500 Internal Server Error")
    (value,) = notifications.condition({"oncall": ok, "operator/slack": failed}).values()
    assert value == (
        "False",
        "DeliveryFailed",
        "target operator/slack: AnalysisFailed not delivered after 4 attempt(s): "
        "HTTP 500 Internal Server Error",
    )


def test_the_engine_shows_the_delivery_observed_as_a_condition_and_keeps_it_when_none_is() -> None:
    world = stable_world(canary_spec())
    observed = engine.Observations(
        OWNER, dict(world.deployments), notifications={"oncall": Delivery(False, "Healthy", 2, "HTTP 503")}
    )
    status = engine.decide(canary_spec(), world.status, observed, world.now).status
    condition = next(c for c in status.conditions or [] if c.type == "NotificationsDelivered")
    assert (condition.status, condition.reason) == ("False", "DeliveryFailed")
    again = engine.decide(
        canary_spec(), status, engine.Observations(OWNER, dict(world.deployments)), world.now
    )
    assert next(c for c in again.status.conditions or [] if c.type == "NotificationsDelivered") == condition


# ---- the delivery loop ------------------------------------------------------------------------


class Endpoint:
    """Answers each send with the next of `answers` (None: 2xx), and records what it got."""

    def __init__(self, *answers: webhook.Failed | None) -> None:
        self.answers = list(answers)
        self.got: list[tuple[str, bytes, float]] = []

    def __call__(self, url: str, body: bytes, timeout: float) -> None:
        self.got.append((url, body, timeout))
        answer = self.answers.pop(0) if self.answers else None
        if answer is not None:
            raise answer


def notifier(send: Endpoint, sleeps: list[float], secrets: dict[str, str] | None = None) -> delivery.Notifier:
    data = {"url": URL} if secrets is None else secrets

    def read_secret(namespace: str, name: str) -> dict[str, str]:
        if (namespace, name) != ("ml", "hook"):
            raise LookupError("not found")
        return data

    return delivery.Notifier(read_secret, send=send, sleep=sleeps.append)


def job(t: api.NotificationTarget | None = None) -> Any:
    t = t or target()
    return delivery._Job(OWNER, delivery.Target(t.name, t, "ml"), aborted())


def test_a_failing_endpoint_is_retried_with_backoff_until_it_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    send, sleeps = Endpoint(webhook.Failed(500, "HTTP 500"), webhook.Failed(None, "no answer within 5s")), []
    with caplog.at_level(logging.INFO):
        result = notifier(send, sleeps).deliver(job(target(timeout="5s")))
    assert result == Delivery(True, "AnalysisFailed", 3)
    assert sleeps == [1.0, 2.0]
    assert [(url, timeout) for url, _, timeout in send.got] == [(URL, 5.0)] * 3
    assert URL not in caplog.text and "very-secret-token" not in caplog.text


def test_a_target_that_keeps_failing_gets_max_attempts_and_its_last_error() -> None:
    send, sleeps = Endpoint(*[webhook.Failed(503, "HTTP 503 Service Unavailable")] * 5), []
    result = notifier(send, sleeps).deliver(job(target(maxAttempts=3)))
    assert result == Delivery(False, "AnalysisFailed", 3, "HTTP 503 Service Unavailable")
    assert sleeps == [1.0, 2.0]


def test_a_refusal_is_not_retried() -> None:
    send, sleeps = Endpoint(webhook.Failed(404, "HTTP 404 Not Found")), []
    assert notifier(send, sleeps).deliver(job()) == Delivery(False, "AnalysisFailed", 1, "HTTP 404 Not Found")
    assert sleeps == []


def test_a_template_error_is_a_failed_delivery_with_no_attempt() -> None:
    send, sleeps = Endpoint(), []
    result = notifier(send, sleeps).deliver(job(target(body={"text": "{{nope}}"})))
    assert (result.ok, result.attempts, send.got) == (False, 0, [])
    assert result.error is not None and result.error.startswith(
        "spec.notifications[oncall].body.text: unknown"
    )


def test_a_missing_secret_or_key_is_named_without_its_contents() -> None:
    send, sleeps = Endpoint(), []
    result = notifier(send, sleeps, secrets={"other": URL}).deliver(job(target(maxAttempts=2)))
    assert result == Delivery(False, "AnalysisFailed", 2, "Secret ml/hook has no key 'url'")
    missing = target(urlFrom={"secretKeyRef": {"name": "gone", "key": "url"}}, maxAttempts=1)
    assert notifier(send, sleeps).deliver(job(missing)).error == "Secret ml/gone: not found"
    assert send.got == []


def test_an_error_that_quotes_the_url_shows_it_redacted() -> None:
    send, sleeps = Endpoint(webhook.Failed(None, f"refused by {URL}")), []
    result = notifier(send, sleeps).deliver(job(target(maxAttempts=1)))
    assert result.error == "refused by <url>"


def test_submitted_notifications_are_sent_by_a_worker_counted_and_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import threading

    done = threading.Event()
    changed: list[tuple[str, str]] = []
    send = Endpoint(webhook.Failed(400, "HTTP 400 Bad Request"))
    n = delivery.Notifier(
        lambda ns, name: {"url": URL},
        on_change=lambda ns, name: (changed.append((ns, name)), done.set()),
        send=send,
        sleep=lambda s: None,
    )
    spec = canary_spec(notifications=[api.dump(target(triggers=["AnalysisFailed"]))])
    event = engine.Event("Warning", "AnalysisFailed", "bad", name="fraud.1", at=T0)
    before = metrics.REGISTRY.get_sample_value(
        "modelship_notifications_total",
        {"namespace": "ml", "name": "fraud", "target": "oncall", "result": "failed"},
    )
    with caplog.at_level(logging.INFO):
        n.submit(OWNER, spec, api.ModelDeploymentStatus(), [engine.Event("Normal", "Healthy", "ok"), event])
        assert done.wait(10)
    assert len(send.got) == 1  # Healthy is not among the target's triggers
    assert changed == [("ml", "fraud")]
    assert n.results(OWNER, spec) == {"oncall": Delivery(False, "AnalysisFailed", 1, "HTTP 400 Bad Request")}
    after = metrics.REGISTRY.get_sample_value(
        "modelship_notifications_total",
        {"namespace": "ml", "name": "fraud", "target": "oncall", "result": "failed"},
    )
    assert after == (before or 0) + 1
    assert n.results(OWNER, canary_spec()) == {}  # a target no longer in the spec is not observed
    assert URL not in caplog.text


def test_operator_wide_targets_come_from_the_flag_or_env_and_bad_ones_name_the_field() -> None:
    args = cli._parser().parse_args(["run"])
    one = '[{"name": "ops", "type": "slack", "urlFrom": {"secretKeyRef": {"name": "slack", "key": "url"}}}]'
    env = {"MODELSHIP_NOTIFICATIONS": one, "POD_NAMESPACE": "modelship"}
    (ops,) = cli.notification_defaults(args, env)
    assert (ops.name, ops.type) == ("ops", "slack")
    assert cli.notification_defaults(args, {}) == []
    bad = cli._parser().parse_args(["run", "--notifications", '[{"name": "ops", "type": "email"}]'])
    with pytest.raises(ValueError, match=r"--notifications .*\[0\.type\]"):
        cli.notification_defaults(bad, env)
    with pytest.raises(ValueError, match="POD_NAMESPACE"):
        cli.notification_defaults(args, {"MODELSHIP_NOTIFICATIONS": one})
    n = delivery.Notifier(lambda ns, name: {}, [ops], "modelship")
    assert [(t.key, t.namespace) for t in n.targets("ml", canary_spec())] == [("operator/ops", "modelship")]
