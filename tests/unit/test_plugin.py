"""The kubectl plugin's help and status view (its verbs run against the cluster in
tests/integration/test_rollouts.py)."""

from __future__ import annotations

from typing import Any

import pytest

from modelship import api, cli, plugin

from .enginesim import spec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("verb", list(plugin.VERB_HELP))
def test_each_verb_has_help_with_a_copyable_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin.main([verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: kubectl modelship {verb}" in out and "NAME" in out and "--namespace" in out
    assert f"kubectl modelship {verb} fraud-detector" in out
    assert plugin.VERB_HELP[verb][0].split(" (")[0][1:] in out


def test_modelship_cli_hands_the_verbs_to_the_plugin(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["promote", "--help"])
    assert "usage: modelship promote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert all(verb in out for verb in plugin.VERB_HELP)


def obj(status: dict[str, Any]) -> dict[str, Any]:
    s = spec(strategy={"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}, replicas=4)
    return {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": api.dump(s), "status": status}


def test_status_view_shows_revisions_weight_step_conditions_and_events() -> None:
    view = plugin.render(
        obj(
            {
                "phase": "Paused",
                "stableRevision": "fraud-aaa",
                "availableReplicas": 3,
                "rollout": {"canary": {"revision": "fraud-bbb", "weight": 20, "step": 1}},
                "conditions": [
                    {
                        "type": "Paused",
                        "status": "True",
                        "reason": "CanaryPauseStep",
                        "message": "step 2/2: paused until `modelship promote` is run",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                        "observedGeneration": 2,
                    }
                ],
            }
        ),
        [
            {
                "lastTimestamp": "2026-01-01T00:00:00Z",
                "type": "Normal",
                "reason": "WeightChanged",
                "message": "x",
            }
        ],
    )
    assert "Phase:      Paused" in view
    assert "Stable:     fraud-aaa (3/4 available)" in view
    assert "Canary:     fraud-bbb" in view
    assert "Weight:     20% canary / 80% stable" in view
    assert "Step:       2/2  {'pause': {}}" in view
    assert "Paused=True  CanaryPauseStep" in view
    assert "Normal  WeightChanged: x" in view


def test_watch_stops_when_the_rollout_is_done() -> None:
    assert plugin.done(obj({"phase": "Healthy"}))
    assert not plugin.done(obj({"phase": "Paused", "rollout": {"canary": {"revision": "fraud-bbb"}}}))
    assert plugin.done(obj({"phase": "Degraded", "rollout": {"aborted": {"revision": "fraud-bbb"}}}))


def test_status_view_shows_the_smoke_test_and_each_analysis_metric() -> None:
    view = plugin.render(
        obj(
            {
                "phase": "Degraded",
                "stableRevision": "fraud-aaa",
                "smokeTest": {
                    "revision": "fraud-bbb",
                    "passed": True,
                    "message": "1 input(s) on 1 pod(s)",
                    "testedAt": "2026-01-01T00:00:00Z",
                },
                "analysis": [
                    {
                        "kind": "step",
                        "revision": "fraud-bbb",
                        "step": 1,
                        "phase": "Failed",
                        "startedAt": "2026-01-01T00:00:00Z",
                        "metrics": [
                            {
                                "name": "errors",
                                "failed": 1,
                                "measurements": [
                                    {
                                        "verdict": "Failed",
                                        "value": 0.3,
                                        "message": "errors = 0.3 is above max 0.05",
                                        "measuredAt": "2026-01-01T00:00:05Z",
                                    }
                                ],
                            },
                            {"name": "accuracy"},
                        ],
                    }
                ],
            }
        ),
        [],
    )
    assert "Smoke test: passed: 1 input(s) on 1 pod(s)" in view
    assert "Analysis:   step 2 of fraud-bbb: Failed" in view
    assert "errors           0 ok, 1 failed, 0 inconclusive; Failed: errors = 0.3 is above max 0.05" in view
    assert "accuracy         0 ok, 0 failed, 0 inconclusive; not measured yet" in view
