"""The dashboard's rules and guard, pure: list rows, the last verdict, why a rollout ended, the step
timeline, the analysis marks with their limits, pods by revision, and which requests are refused
(Host, Origin, session token). The server over real HTTP: tests/integration/test_dashboard.py."""

from __future__ import annotations

import asyncio
import copy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship import api
from modelship.core.analysis import templates
from modelship.plugin import args
from modelship.plugin.dashboard import guard, rules, server

pytestmark = pytest.mark.unit

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "canary.yaml"
NOW = datetime(2026, 12, 2, 4, 0, 0, tzinfo=UTC)
T0 = "2026-12-02T03:50:00Z"


def md(status: dict[str, Any] | None = None) -> dict[str, Any]:
    """examples/canary.yaml (steps: weight 10, pause 60s, weight 50, analysis, pause, weight 100)."""
    obj: dict[str, Any] = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    obj["metadata"].update(namespace="ml", creationTimestamp=T0, resourceVersion="7")
    obj["status"] = status or {}
    return obj


def measurement(verdict: str, value: float, at: str) -> dict[str, Any]:
    return {"verdict": verdict, "value": value, "message": f"{verdict.lower()}", "measuredAt": at}


def run(*metrics: tuple[str, list[dict[str, Any]]], phase: str = "Running") -> dict[str, Any]:
    return {
        "kind": "step",
        "revision": "recommender-b2",
        "step": 3,
        "phase": phase,
        "startedAt": "2026-12-02T03:55:00Z",
        "metrics": [{"name": n, "measurements": ms} for n, ms in metrics],
    }


CANARY: dict[str, Any] = {
    "phase": "Progressing",
    "stableRevision": "recommender-a1",
    "rollout": {"canary": {"revision": "recommender-b2", "step": 1, "weight": 10, "actualWeight": 9}},
}


def test_a_row_shows_phase_revisions_weights_step_age_and_last_verdict() -> None:
    status = {
        **CANARY,
        "analysis": [run(("error-rate", [measurement("Successful", 0.001, "2026-12-02T03:58:00Z")]))],
    }
    row = rules.row(md(status), NOW)
    assert {k: row[k] for k in ("namespace", "name", "phase", "stable", "candidate", "step", "age")} == {
        "namespace": "ml",
        "name": "recommender",
        "phase": "Progressing",
        "stable": "recommender-a1",
        "candidate": "recommender-b2",
        "step": "1/6",
        "age": "10m",
    }
    assert (row["weight"], row["actualWeight"]) == (10, 9)
    assert row["lastVerdict"] == "Successful: error-rate = 0.001 (max 0.01)"
    assert row["why"] is None


def test_the_last_verdict_is_the_newest_measurement_of_any_metric_with_its_limit() -> None:
    status = {
        **CANARY,
        "analysis": [
            run(
                ("accuracy", [measurement("Failed", 0.8, "2026-12-02T03:59:00Z")]),
                ("error-rate", [measurement("Successful", 0.0, "2026-12-02T03:58:00Z")]),
            )
        ],
    }
    assert rules.row(md(status), NOW)["lastVerdict"] == (
        "Failed: accuracy = 0.8 (min 0.9, drop vs stable <= 0.02)"
    )


def test_the_last_verdict_falls_back_to_the_runs_phase_then_the_smoke_test_then_nothing() -> None:
    assert rules.row(md({**CANARY, "analysis": [run(phase="Error")]}), NOW)["lastVerdict"] == "step Error"
    smoke = {"revision": "recommender-b2", "passed": False, "message": "x", "testedAt": T0}
    assert rules.row(md({**CANARY, "smokeTest": smoke}), NOW)["lastVerdict"] == "smoke test failed"
    assert rules.row(md(CANARY), NOW)["lastVerdict"] == ""


def test_an_aborted_rollout_says_why_in_one_sentence_with_the_operators_reason() -> None:
    status = {
        "phase": "Degraded",
        "stableRevision": "recommender-a1",
        "rollout": {
            "aborted": {
                "revision": "recommender-b2",
                "reason": "AnalysisFailed",
                "message": "error-rate 0.2 above max 0.01.",
            }
        },
    }
    assert rules.why(md(status)) == (
        "Revision recommender-b2 was aborted (AnalysisFailed): error-rate 0.2 above max 0.01."
    )


def test_an_abort_without_a_message_names_the_last_failed_measurement() -> None:
    status = {
        "phase": "Degraded",
        "rollout": {"aborted": {"revision": "recommender-b2", "reason": "AnalysisFailed"}},
        "analysis": [
            run(("error-rate", [measurement("Failed", 0.2, "2026-12-02T03:59:00Z")]), phase="Failed")
        ],
    }
    assert rules.why(md(status)) == (
        "Revision recommender-b2 was aborted (AnalysisFailed). "
        "Last failed measurement: Failed: error-rate = 0.2 (max 0.01)."
    )


def test_a_rolled_back_rollout_says_the_spec_went_back_to_stable() -> None:
    status = {
        "phase": "RolledBack",
        "stableRevision": "recommender-a1",
        "rollout": {"rolledBack": {"revision": "recommender-b2"}},
    }
    assert rules.why(md(status)) == (
        "Revision recommender-b2 was rolled back: the spec went back to the stable revision recommender-a1."
    )


def test_degraded_without_an_abort_quotes_the_progressing_condition_and_healthy_has_no_why() -> None:
    condition = {
        "type": "Progressing",
        "status": "False",
        "reason": "ProgressDeadlineExceeded",
        "message": "no progress for 10m",
        "lastTransitionTime": T0,
        "observedGeneration": 1,
    }
    assert rules.why(md({"phase": "Degraded", "conditions": [condition]})) == "Degraded: no progress for 10m."
    assert rules.why(md({"phase": "Healthy", "stableRevision": "recommender-a1"})) is None


def test_the_timeline_marks_done_current_next_and_a_timed_pauses_time_left() -> None:
    status = copy.deepcopy(CANARY)
    status["rollout"]["canary"]["pauseStartTime"] = "2026-12-02T03:59:20Z"  # 40 s into a 60 s pause
    steps = rules.timeline(md(status), NOW)
    assert [(s["label"], s["state"]) for s in steps] == [
        ("weight 10%", "done"),
        ("pause 60s", "current"),
        ("weight 50%", "next"),
        ("analysis", "next"),
        ("pause until promoted", "next"),
        ("weight 100%", "next"),
    ]
    assert steps[1]["remaining"] == 20
    assert all(s["remaining"] is None for s in steps if s["index"] != 1)


def test_an_overdue_pause_shows_zero_left_and_no_canary_leaves_every_step_idle() -> None:
    status = copy.deepcopy(CANARY)
    status["rollout"]["canary"]["pauseStartTime"] = "2026-12-02T03:00:00Z"
    assert rules.timeline(md(status), NOW)[1]["remaining"] == 0
    assert {s["state"] for s in rules.timeline(md({"phase": "Healthy"}), NOW)} == {"idle"}


def test_marks_are_every_measurement_oldest_first_with_limit_value_and_verdict() -> None:
    status = {
        **CANARY,
        "analysis": [
            run(
                (
                    "error-rate",
                    [
                        measurement("Successful", 0.0, "2026-12-02T03:56:00Z"),
                        measurement("Failed", 0.3, "2026-12-02T03:58:00Z"),
                    ],
                ),
                ("latency-p99", [measurement("Successful", 0.1, "2026-12-02T03:57:00Z")]),
            )
        ],
    }
    got = rules.detail(md(status), [], [], [], NOW)["marks"]
    assert [(m["metric"], m["verdict"], m["value"], m["limit"]) for m in got] == [
        ("error-rate", "Successful", 0.0, "max 0.01"),
        ("latency-p99", "Successful", 0.1, "max 0.25"),
        ("error-rate", "Failed", 0.3, "max 0.01"),
    ]
    assert got[-1]["at"] == "2026-12-02T03:58:00Z" and got[-1]["step"] == 3


def test_a_metric_spec_analysis_does_not_name_has_no_limit() -> None:
    spec_only = api.ModelDeploymentSpec.model_validate(md()["spec"])
    assert rules.limit(spec_only, "experiment-accuracy") == ""


def test_a_weight_point_has_the_asked_and_actual_candidate_weight_and_stables_rest() -> None:
    assert rules.weight_point(md(CANARY), NOW) == {
        "at": "2026-12-02T04:00:00Z",
        "weight": 10,
        "actualWeight": 9,
        "stable": 91,
    }
    assert rules.weight_point(md({"phase": "Healthy"}), NOW)["stable"] == 100


def test_pods_are_grouped_by_revision_with_readiness_and_restarts() -> None:
    def pod(name: str, revision: str, ready: bool, restarts: int) -> dict[str, Any]:
        return {
            "metadata": {"name": name, "labels": {"modelship.io/revision": revision}},
            "status": {"phase": "Running", "containerStatuses": [{"ready": ready, "restartCount": restarts}]},
        }

    got = rules.pods([pod("a-1", "a", True, 0), pod("b-1", "b", False, 3), pod("a-2", "a", True, 1)])
    assert got == {
        "a": [
            {"name": "a-1", "phase": "Running", "ready": True, "restarts": 0},
            {"name": "a-2", "phase": "Running", "ready": True, "restarts": 1},
        ],
        "b": [{"name": "b-1", "phase": "Running", "ready": False, "restarts": 3}],
    }
    assert rules.pods([{"metadata": {"name": "p"}, "status": {"phase": "Pending"}}])["-"][0]["ready"] is False


def test_events_are_oldest_first_with_their_counts() -> None:
    got = rules.events(
        [
            {
                "lastTimestamp": "2026-12-02T03:59:00Z",
                "type": "Warning",
                "reason": "AnalysisFailed",
                "message": "m",
                "count": 2,
            },
            {
                "lastTimestamp": "2026-12-02T03:51:00Z",
                "type": "Normal",
                "reason": "StepCompleted",
                "message": "s",
            },
        ]
    )
    assert [(e["reason"], e["count"]) for e in got] == [("StepCompleted", 1), ("AnalysisFailed", 2)]


PORT, TOKEN = 3110, "s3cret-token"
GOOD = {"Host": "127.0.0.1:3110"}


def refusal(
    path: str,
    headers: dict[str, str],
    query: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
) -> str | None:
    return guard.refusal(path, headers, query or {}, cookies or {}, guard.local(PORT), TOKEN)


@pytest.mark.parametrize("host", ["127.0.0.1:3110", "localhost:3110"])
def test_the_dashboards_own_host_with_the_token_is_served(host: str) -> None:
    assert refusal("/api/list", {"Host": host, guard.TOKEN_HEADER: TOKEN}) is None
    assert refusal("/", {"Host": host}, query={"token": TOKEN}) is None
    assert refusal("/", {"Host": host}, cookies={guard.TOKEN_COOKIE: TOKEN}) is None
    assert refusal("/api/stream", {"Host": host, "Origin": f"http://{host}"}, query={"token": TOKEN}) is None


@pytest.mark.parametrize("host", ["evil.example:3110", "127.0.0.1:9999", "127.0.0.1", ""])
def test_another_host_is_refused_even_with_the_token_against_dns_rebinding(host: str) -> None:
    why = refusal("/api/list", {"Host": host, guard.TOKEN_HEADER: TOKEN})
    assert why is not None and "Host" in why


@pytest.mark.parametrize(
    "origin", ["http://evil.example", "http://127.0.0.1:9999", "https://127.0.0.1:3110", "null"]
)
def test_a_foreign_origin_is_refused_even_with_the_token(origin: str) -> None:
    why = refusal("/api/md/ml/x/abort", {**GOOD, "Origin": origin, guard.TOKEN_HEADER: TOKEN})
    assert why is not None and "Origin" in why


@pytest.mark.parametrize("path", ["/", "/api/list", "/api/stream", "/api/md/ml/x/promote"])
def test_the_page_and_the_api_need_the_token(path: str) -> None:
    for wrong in ({}, {guard.TOKEN_HEADER: "guess"}):
        why = refusal(path, {**GOOD, **wrong})
        assert why is not None and "token" in why


def test_static_assets_need_no_token_but_the_right_host() -> None:
    assert refusal("/static/app.js", GOOD) is None
    assert refusal("/static/app.js", {"Host": "evil.example:3110"}) is not None


def test_hosts_are_the_loopback_address_and_localhost_at_the_port() -> None:
    assert guard.local(8000).hosts == {"127.0.0.1:8000", "localhost:8000"}


@pytest.mark.parametrize("text", ["99999", "-1", "web"])
def test_a_bad_port_is_a_usage_error_naming_the_flag(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        args.parser().parse_args(["dashboard", "--port", text])
    assert exited.value.code == 2
    assert "argument --port: must be a port number from 0 to 65535" in capsys.readouterr().err


def test_the_dashboard_listens_on_3110_unless_told() -> None:
    assert args.parser().parse_args(["dashboard"]).port == 3110
    assert args.parser().parse_args(["dashboard", "--port", "0"]).port == 0


def test_the_charts_are_the_analysis_templates_for_stable_and_candidate() -> None:
    got = rules.chart_queries(md(CANARY))
    assert [(q["chart"], q["role"], q["revision"]) for q in got[:2]] == [
        ("requests", "stable", "recommender-a1"),
        ("requests", "candidate", "recommender-b2"),
    ]
    assert [q["chart"] for q in got[::2]] == [chart for chart, _ in rules.CHARTS]
    error_rate = next(q for q in got if q["chart"] == "error-rate" and q["role"] == "candidate")
    assert error_rate["promql"] == templates.template_query(
        "error-rate", namespace="ml", name="recommender", revision="recommender-b2", window="1m"
    )


def test_an_aborted_candidate_is_still_charted_and_no_rollout_charts_stable_only() -> None:
    aborted = {"stableRevision": "recommender-a1", "rollout": {"aborted": {"revision": "recommender-b2"}}}
    assert rules.revisions(md(aborted)) == [("stable", "recommender-a1"), ("candidate", "recommender-b2")]
    assert rules.revisions(md({"stableRevision": "recommender-a1"})) == [("stable", "recommender-a1")]


def test_the_chart_window_starts_at_the_rollouts_first_sign_within_2_minutes_and_6_hours() -> None:
    # 15 minutes in steps of 7 s: 129 steps back from now, so the last point is now.
    assert rules.chart_window(md(CANARY), [], NOW) == (NOW - timedelta(seconds=129 * 7), NOW, 7)
    early = {**CANARY, "analysis": [run()]}  # started 03:55
    assert rules.chart_window(md(early), [], NOW) == (NOW - timedelta(minutes=5), NOW, 5)
    seen = [{"at": "2026-12-02T03:59:30+00:00"}]  # half a minute ago: the last 2 minutes
    assert rules.chart_window(md(CANARY), seen, NOW)[0] == NOW - timedelta(minutes=2)
    history = [{"at": "2026-12-02T02:00:00+00:00"}]
    assert rules.chart_window(md(CANARY), history, NOW) == (NOW - timedelta(hours=2), NOW, 60)
    history = [{"at": "2026-11-30T00:00:00+00:00"}]
    assert rules.chart_window(md(CANARY), history, NOW)[0] == NOW - timedelta(hours=6)


def test_the_hub_keeps_a_weight_point_per_change_and_tells_every_stream() -> None:
    hub = server.Hub()
    stream: asyncio.Queue[str | None] = asyncio.Queue()
    hub.streams.add(stream)
    at_20 = copy.deepcopy(CANARY)
    at_20["rollout"]["canary"].update(weight=20, actualWeight=20)
    for status in (CANARY, CANARY, at_20):  # the same weights twice: one point
        hub.seen("MODIFIED", md(status))
    key = ("ml", "recommender")
    assert [(p["weight"], p["actualWeight"]) for p in hub.history[key]] == [(10, 9), (20, 20)]
    assert [r["weight"] for r in hub.rows()] == [20]
    hub.seen("DELETED", md(at_20))
    assert key not in hub.objects and key not in hub.history
    told = [stream.get_nowait() for _ in range(stream.qsize())]
    assert [(m or "").split("\n")[0] for m in told] == ["event: row"] * 3 + ["event: gone"]
    hub.close()
    assert stream.get_nowait() is None
