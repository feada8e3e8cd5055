"""The fault suite's figures (localworld.faults), worked out from Events and status samples, and
the crash hook's arming (localworld.crashpoint): pure parts, on made-up inputs."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from localworld import crashpoint
from localworld.faults.canaries import STEPS4
from localworld.faults.figures import (
    Sample,
    expected_events,
    pauses_cut_short,
    rollout_events,
    step_figures,
    weight_regressions,
)

pytestmark = pytest.mark.unit


def event(reason: str, note: str, second: int) -> dict[str, Any]:
    return {
        "reason": reason,
        "note": note,
        "eventTime": f"2026-01-01T00:00:{second:02d}.000000Z",
        "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"},
    }


def clean_run(revision: str = "m-2") -> list[dict[str, Any]]:
    return [
        event("RolloutStarted", f"rolling out revision {revision} in 4 canary steps", 1),
        event("WeightChanged", "step 1/4: canary weight 0% -> 20%", 2),
        event("PauseStarted", "step 2/4: paused for 3s", 2),
        event("WeightChanged", "step 3/4: canary weight 20% -> 50%", 6),
        event("PauseStarted", "step 4/4: paused for 3s", 6),
        event("Promoted", f"revision {revision} promoted to stable after 4 steps", 10),
    ]


def sample(
    canary: str | None, weight: int, route: int, selects: str | None, aborted: str | None = None
) -> Sample:
    return Sample(
        t=0.0,
        generation=2,
        observed_generation=2,
        phase="Progressing",
        stable="m-1",
        canary=canary,
        step=0,
        weight=weight,
        aborted=aborted,
        route={"m-stable": 100 - route, "m-canary": route},
        canary_service=selects,
        paused_reason=None,
    )


def test_each_step_and_the_promotion_posted_once_is_a_clean_run() -> None:
    assert expected_events(STEPS4) == {
        "RolloutStarted": 1,
        "WeightChanged": 2,
        "PauseStarted": 2,
        "Promoted": 1,
    }
    assert step_figures(clean_run(), STEPS4) == (0, 0, 0)


def test_a_step_posted_twice_is_repeated_and_one_never_posted_is_skipped_and_missing() -> None:
    repeated = [*clean_run(), event("WeightChanged", "step 3/4: canary weight 20% -> 50%", 7)]
    assert step_figures(repeated, STEPS4) == (1, 0, 0)
    skipped = [e for e in clean_run() if not e["note"].startswith("step 2/4")]
    assert step_figures(skipped, STEPS4) == (0, 1, 1)


def test_an_abort_counts_the_steps_taken_and_its_own_event() -> None:
    events = [clean_run()[0], event("ProgressDeadlineExceeded", "canary m-2 made no progress", 20)]
    assert step_figures(events, STEPS4, reached=0, end="ProgressDeadlineExceeded") == (0, 0, 0)
    assert step_figures(events[:1], STEPS4, reached=0, end="ProgressDeadlineExceeded") == (0, 1, 1)


def test_only_the_events_from_the_last_start_of_the_revision_belong_to_its_rollout() -> None:
    earlier = [e | {"eventTime": f"2025-{e['eventTime'][5:]}"} for e in clean_run("m-2")[:3]]
    measured = event("AnalysisMeasured", "step analysis of revision m-2 measured ...", 3) | {
        "series": {"count": 2}
    }
    found = rollout_events([*clean_run("m-2"), *earlier, measured], "m-2")
    assert [e["reason"] for e in found] == [e["reason"] for e in clean_run()]
    assert rollout_events(clean_run("m-2"), "m-3") == []


def test_a_weight_going_down_while_its_rollout_goes_on_is_a_regression() -> None:
    rising = [sample("m-2", 20, 20, "m-2"), sample("m-2", 50, 50, "m-2")]
    assert weight_regressions(rising) == []
    assert weight_regressions([*rising, sample("m-2", 20, 50, "m-2")]) == [
        "at 0.0s: status weight of m-2 50 -> 20"
    ]
    assert weight_regressions([*rising, sample("m-2", 50, 20, "m-2")]) == [
        "at 0.0s: route weight of the canary Service (m-2) 50 -> 20; status weight 50 -> 50"
    ]


def test_a_new_revision_or_an_abort_taking_the_weight_away_is_no_regression() -> None:
    at_half = sample("m-2", 50, 50, "m-2")
    # A new digest: the status names the new canary, the route sends the old one's share to stable.
    assert weight_regressions([at_half, sample("m-3", 0, 50, "m-2"), sample("m-3", 0, 0, "m-2")]) == []
    assert weight_regressions([at_half, sample(None, 0, 0, "m-2", aborted="ProgressDeadlineExceeded")]) == []


def body(generation: int, name: str = "m", namespace: str = "ns") -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "generation": generation}}


def test_the_crash_hook_arms_for_one_modeldeployment_from_a_generation_on(tmp_path: Path) -> None:
    path = tmp_path / "op.arm"
    assert crashpoint._armed(path, body(3)) is None  # nothing armed
    crashpoint.arm(path, "ns", "m", generation=3, after=2)
    assert crashpoint._armed(path, body(2)) is None  # the pass before the change
    assert crashpoint._armed(path, body(3, name="other")) is None
    assert crashpoint._armed(path, body(3)) == 2
    crashpoint._finish(path, {"crashed": True, "writes": 2, "log": ["PATCH a", "PATCH b"]})
    assert not path.exists() and crashpoint._armed(path, body(3)) is None  # a restart runs normally
    assert crashpoint.outcome(path) == {"crashed": True, "writes": 2, "log": ["PATCH a", "PATCH b"]}


def test_an_operator_started_with_the_hook_loads_it_and_keeps_its_own_path(tmp_path: Path) -> None:
    env = crashpoint.hook_env({"PYTHONPATH": "/somewhere"}, tmp_path / "op.arm")
    paths = env["PYTHONPATH"].split(":")
    assert paths[0] == str(crashpoint.HOOK_DIR) and paths[-1] == "/somewhere"
    assert (crashpoint.HOOK_DIR / "sitecustomize.py").exists()
    assert env[crashpoint.ENV] == str(tmp_path / "op.arm")


def test_events_of_one_pass_share_a_second_and_the_start_still_counts_first() -> None:
    same_pass = [
        event("WeightChanged", "step 1/4: canary weight 0% -> 20%", 1),
        event("CanaryReplaced", "spec asks for revision m-2: canary m-1 removed", 1),
        *clean_run()[2:],
        event("RolloutStarted", "rolling out revision m-2 in 4 canary steps", 1),
    ]
    found = rollout_events(same_pass, "m-2")
    assert [e["reason"] for e in found][:2] == ["RolloutStarted", "WeightChanged"]
    assert "CanaryReplaced" not in [e["reason"] for e in found]
    assert step_figures(found, STEPS4) == (0, 0, 0)


def test_a_timed_pause_is_cut_short_when_its_step_ends_before_its_duration_at_its_weight() -> None:
    steps: list[dict[str, Any]] = [{"setWeight": 20}, {"pause": {"duration": "3s"}}, {"setWeight": 50}]

    def at(t: float, step: int, route: int) -> Sample:
        return dataclasses.replace(sample("m-2", route, route, "m-2"), t=t, step=step)

    # The route shows 20% at 1.0 s; the pause (step index 1) is done once the status step is 2.
    held = [at(0.5, 0, 0), at(1.0, 1, 20), at(3.0, 1, 20), at(4.0, 2, 20)]
    assert pauses_cut_short(held, steps, "m") == []
    cut = [at(0.5, 0, 0), at(1.0, 1, 20), at(2.5, 2, 20)]  # 1.5 s at 20% of a 3 s pause
    assert pauses_cut_short(cut, steps, "m") == ["step 2 (pause 3s) held 1.50s at weight 20"]
