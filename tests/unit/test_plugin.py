"""The kubectl plugin's command line, status view, CI-gate verdict and set image, pure (its commands
run against the cluster in tests/integration/test_plugin.py and test_rollouts.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship import api, cli, plugin
from modelship.plugin import args, setimage, status, view

from .enginesim import spec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("verb", list(plugin.VERB_HELP))
def test_each_verb_has_help_with_a_copyable_example(verb: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin.main([verb, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert f"usage: kubectl modelship {verb}" in out
    help_, example = plugin.VERB_HELP[verb]
    assert all(line in out for line in example.split("\n")), example
    assert help_.split(" (")[0][1:].split(":")[0] in out
    if verb != "completion":
        assert "--namespace" in out and "--context" in out and "--kubeconfig" in out


def test_status_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        plugin.main(["status", "--help"])
    out = capsys.readouterr().out
    for code in (view.OK, view.FAILED, view.USAGE, view.TIMEOUT, view.ERROR):
        assert f"\n  {code}  " in out
    assert "--timeout DURATION" in out and "--watch" in out


def test_set_image_help_names_both_fields_and_says_gitops_changes_git(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        plugin.main(["set", "image", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "NAME IMAGE" in out and "--model-sha256 HEX" in out
    assert "spec.image and spec.model.sha256" in out and "in Git instead" in out


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("1h30m", 5400), ("1500ms", 1.5)])
def test_timeout_takes_go_style_durations(text: str, seconds: float) -> None:
    assert args.timeout(text).total_seconds() == seconds


@pytest.mark.parametrize("argv", [["status", "x", "--timeout", "5"], ["status", "x", "--timeout", "soon"]])
def test_a_bad_timeout_is_a_usage_error_naming_the_flag(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        plugin.main(argv)
    assert exited.value.code == view.USAGE == 2
    err = capsys.readouterr().err
    assert "--timeout" in err and "such as 30s, 5m or 1h30m" in err


def test_connection_flags_go_before_or_after_the_command() -> None:
    before = plugin.parser().parse_args(["-n", "ml", "--context", "prod", "get", "x", "-o", "yaml"])
    after = plugin.parser().parse_args(["get", "x", "-n", "ml", "--context", "prod", "-o", "yaml"])
    for a in (before, after):
        assert (a.namespace, a.context, a.kubeconfig, a.name, a.output) == ("ml", "prod", None, "x", "yaml")
    listed = plugin.parser().parse_args(["list", "-A", "-o", "wide", "--kubeconfig", "/k"])
    assert (listed.all_namespaces, listed.output, listed.kubeconfig) == (True, "wide", "/k")


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
    assert "Step:       1/2  {'pause': {}}" in view  # steps done (the STEP column), then the step in progress
    assert "Paused=True  CanaryPauseStep" in view
    assert "Normal  WeightChanged: x" in view


def test_watch_stops_when_the_rollout_is_done() -> None:
    assert plugin.done(obj({"phase": "Healthy"}))
    assert not plugin.done(obj({"phase": "Paused", "rollout": {"canary": {"revision": "fraud-bbb"}}}))
    assert plugin.done(obj({"phase": "Degraded", "rollout": {"aborted": {"revision": "fraud-bbb"}}}))


def test_a_healthy_phase_the_operator_has_not_seen_the_new_spec_for_is_not_done() -> None:
    changed = {
        **obj({"phase": "Healthy", "observedGeneration": 1}),
        "metadata": {"name": "f", "generation": 2},
    }
    assert not plugin.done(changed) and view.verdict(changed) is None
    seen = {**changed, "status": {"phase": "Healthy", "observedGeneration": 2}}
    assert plugin.done(seen)


def test_the_verdict_exits_0_on_healthy_and_1_with_the_reason_on_degraded_or_rolled_back() -> None:
    healthy = view.verdict(obj({"phase": "Healthy", "stableRevision": "fraud-aaa"}))
    assert healthy == view.Verdict(view.OK, "fraud is Healthy: revision fraud-aaa serves")
    degraded = view.verdict(
        obj(
            {
                "phase": "Degraded",
                "rollout": {"aborted": {"revision": "fraud-bbb", "reason": "AnalysisFailed"}},
                "conditions": [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "Aborted",
                        "message": "errors = 0.3 is above max 0.05",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            }
        )
    )
    assert degraded is not None and degraded.code == view.FAILED
    assert degraded.reason == (
        "fraud is Degraded: revision fraud-bbb aborted (AnalysisFailed); errors = 0.3 is above max 0.05"
    )
    rolled = view.verdict(obj({"phase": "RolledBack", "rollout": {"rolledBack": {"revision": "fraud-ccc"}}}))
    assert rolled == view.Verdict(view.FAILED, "fraud is RolledBack: revision fraud-ccc rolled back")
    assert view.verdict(obj({"phase": "Progressing", "rollout": {"canary": {"revision": "x"}}})) is None


def test_the_watch_redraws_in_place_on_a_terminal_and_appends_elsewhere() -> None:
    out = io.StringIO()
    screen = status.Screen(out, redraw=True)
    screen.draw("Phase:  Progressing\nStep: 1")
    screen.draw("Phase:  Healthy")
    first, second = out.getvalue().split(status.ERASE_BELOW)[:2]
    assert first.startswith(status.HOME + status.CLEAR)
    # Later draws go home and overwrite line by line: no clear-screen, which tmux would scroll away.
    assert second == status.HOME + "Phase:  Healthy" + status.ERASE_LINE + "\n"
    plain = io.StringIO()
    appended = status.Screen(plain, redraw=False)
    appended.draw("one")
    appended.draw("two")
    assert plain.getvalue() == "one\n\ntwo\n"


DIGEST = "registry.example/fraud@sha256:" + "b" * 64


def test_set_image_patches_the_image_and_the_model_checksum_together() -> None:
    assert setimage.patch(DIGEST, "c" * 64) == {"spec": {"image": DIGEST, "model": {"sha256": "c" * 64}}}


@pytest.mark.parametrize(
    ("image", "sha", "names"),
    [
        ("registry.example/fraud:v2", "c" * 64, "IMAGE: spec.image must pin the image by digest"),
        (DIGEST, None, "--model-sha256 is required: spec.model.sha256"),
        (DIGEST, "C" * 64, "--model-sha256: spec.model.sha256 must be exactly 64 lowercase hex digits"),
        (DIGEST, "abc", "--model-sha256: spec.model.sha256 must be exactly 64 lowercase hex digits"),
    ],
)
def test_set_image_refuses_a_tag_or_a_missing_or_bad_checksum_naming_the_field(
    image: str, sha: str | None, names: str
) -> None:
    with pytest.raises(setimage.BadValue, match=names):
        setimage.patch(image, sha)


def test_set_image_refuses_a_tag_before_reaching_any_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    code = plugin.main(
        [
            "set",
            "image",
            "fraud",
            "registry.example/fraud:v2",
            "--model-sha256",
            "c" * 64,
            "--kubeconfig",
            "/nonexistent",
        ]
    )
    assert code == view.USAGE
    assert "IMAGE: spec.image must pin the image by digest" in capsys.readouterr().err


def test_set_image_prints_the_change_to_make_in_git() -> None:
    text = setimage.gitops_change("fraud", setimage.patch(DIGEST, "c" * 64))
    assert text.startswith("# Under GitOps")
    doc = yaml.safe_load(text)
    assert doc == {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "fraud"},
        "spec": {"image": DIGEST, "model": {"sha256": "c" * 64}},
    }


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


def test_docs_show_what_set_image_dry_run_prints() -> None:
    """docs/plugin.md's `set image --dry-run` example and its output, as the plugin prints it."""
    docs = (Path(__file__).resolve().parents[2] / "docs" / "plugin.md").read_text()
    image = "registry.example/modelship/fraud-detector@sha256:" + (
        "8d99c324196c8118d2660d6585685eee08ace8214cd81deb3230b34a315c7df8"
    )
    model = "1ca6c550fdae5401efafafb68a79ad2b7127872e79440a8aca63f3463c76e9e6"
    assert f"  {image} \\\n  --model-sha256 {model} --dry-run\n" in docs
    assert setimage.gitops_change("fraud-detector", setimage.patch(image, model)) in docs
