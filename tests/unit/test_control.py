"""Manual control (core/control.py) without fighting a GitOps tool: every verb acts through the
status, `--apply` alone changes the spec, and undo says which Git change makes it stick. Also: the
operator carries `status.pause` over, and analysis rounds are one Event series."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import yaml

from modelship import api
from modelship.core import control
from modelship.kube.storage import merge_patch

from .enginesim import command, merged
from .test_analysis_engine import run_until, with_analysis
from .test_bluegreen import bg_spec
from .test_canary import NEW_IMAGE, canary_spec, condition, name_of, stable_world, step

pytestmark = pytest.mark.unit

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def git_change(advice: str) -> dict[str, Any]:
    """The YAML the advice says to put in the manifest (from `spec:` to the line after it)."""
    lines = advice.splitlines()
    start = lines.index("spec:")
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    change: dict[str, Any] = yaml.safe_load("\n".join(lines[start:end]))["spec"]
    return change


def with_git(s: api.ModelDeploymentSpec, change: dict[str, Any]) -> api.ModelDeploymentSpec:
    """The spec after a person committed `change` to the manifest and the GitOps tool synced it."""
    return api.ModelDeploymentSpec.model_validate({**api.dump(s), **change})


def states() -> dict[str, tuple[api.ModelDeploymentSpec, api.ModelDeploymentStatus]]:
    """A ModelDeployment in each state a verb can meet: steady, canary, paused, aborted, preview."""
    old = canary_spec()
    world = stable_world(old)
    out = {"steady": (old, world.status)}
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    out["canary"] = (new, world.status)
    paused = world.status.model_copy(update={"pause": api.ManualPause(by="someone", at=NOW)})
    out["paused"] = (new.model_copy(update={"paused": True}), paused)
    out["aborted"] = command("abort", new, world.status)
    world = stable_world(bg_spec())
    preview = bg_spec(NEW_IMAGE)
    step(world, preview)
    out["preview"] = (preview, world.status)
    return out


@pytest.mark.parametrize("state", ["steady", "canary", "paused", "aborted", "preview"])
@pytest.mark.parametrize("verb", control.VERBS)
def test_no_verb_writes_the_spec_unless_asked_to_apply(verb: str, state: str) -> None:
    s, status = states()[state]
    try:
        patch = control.patch_for(verb, s, status, now=NOW)
    except control.NotApplicable:
        return
    assert patch.target in ("status", None), (verb, state, patch)


def test_promote_after_the_last_step_is_refused_rather_than_naming_a_step_past_the_end() -> None:
    # Found by the engine-state property test: the status sat at step == len(steps) (every step
    # done, the promotion waiting on a lagging route) and each promote added one.
    s, status = states()["canary"]
    last = len(s.strategy.steps)
    assert status.rollout is not None and status.canary is not None and status.canary.step < last
    at_end = status.rollout.model_copy(update={"canary": status.canary.model_copy(update={"step": last})})
    done = status.model_copy(update={"rollout": at_end})
    with pytest.raises(control.NotApplicable, match="every canary step is done"):
        control.patch_for("promote", s, done, now=NOW)
    assert (
        control.patch_for("promote", s, status, now=NOW).body["rollout"]["canary"]["step"]
        == status.canary.step + 1
    )


def test_pause_is_a_status_field_that_holds_the_canary_and_the_operators_writes_keep_it() -> None:
    world = stable_world(canary_spec())
    new = canary_spec(NEW_IMAGE)
    world.reconcile(new)
    patch = control.patch_for("pause", new, world.status, now=NOW, by="alice")
    assert patch == control.Patch(
        "status",
        {"pause": {"by": "alice", "at": "2026-03-01T12:00:00Z"}},
        "status.pause is set; `modelship resume` continues",
    )
    world.status = api.ModelDeploymentStatus.model_validate(merged(api.dump(world.status), patch.body))
    for _ in range(3):
        before = world.status
        world.settle()
        decision = world.reconcile(new)
        # The operator's status write is a merge patch against the stored status: `pause` is not in it.
        assert "pause" not in merge_patch(api.dump(before), api.dump(decision.status))
    assert decision.status.pause == api.ManualPause(by="alice", at=NOW)
    assert decision.status.phase == "Paused"
    paused = condition(decision.status, "Paused")
    assert (paused.reason, paused.message) == (
        "PausedByUser",
        "paused by alice at 2026-03-01T12:00:00Z (status.pause); `modelship resume` continues",
    )
    assert decision.status.canary is not None and decision.status.canary.weight == 0
    again = control.patch_for("pause", new, world.status, now=NOW.replace(hour=13), by="bob")
    assert again.target is None and "already paused by alice" in again.advice  # the first ask stays
    new, world.status = command("resume", new, world.status)
    assert world.status.pause is None
    world.reconcile(new)
    assert world.status.canary is not None and world.status.canary.weight == 20


def test_pause_holds_a_blue_green_preview_until_resumed() -> None:
    world = stable_world(bg_spec(autoPromote=True))
    new = bg_spec(NEW_IMAGE, autoPromote=True)
    world.reconcile(new)
    new, world.status = command("pause", new, world.status)
    for _ in range(3):
        world.settle()
        world.reconcile(new)
    assert world.status.blue_green is not None and world.status.blue_green.phase == "Preview"
    assert condition(world.status, "Paused").reason == "PausedByUser"
    new, world.status = command("resume", new, world.status)
    run_until(world, new, lambda s: s.stable_revision == name_of(new))


def test_spec_paused_in_git_holds_too_and_resume_prints_the_git_change_for_it() -> None:
    world = stable_world(canary_spec())
    new = canary_spec(NEW_IMAGE, paused=True)
    world.reconcile(new)
    new, world.status = command("pause", new, world.status)
    world.settle()
    paused = condition(world.reconcile(new).status, "Paused")
    assert paused.reason == "PausedBySpec" and "also paused by kubectl-modelship" in paused.message

    resume = control.patch_for("resume", new, world.status)
    assert (resume.target, resume.body) == ("status", {"pause": None})
    assert git_change(resume.advice) == {"paused": False}
    new, world.status = command("resume", new, world.status)
    world.settle()
    assert condition(world.reconcile(new).status, "Paused").reason == "PausedBySpec"  # Git still says so

    nothing = control.patch_for("resume", new, world.status)
    assert nothing.target is None and "nothing changed in the cluster" in nothing.advice
    assert git_change(nothing.advice) == {"paused": False}
    assert control.patch_for("resume", new, world.status, apply=True).body == {"paused": False}
    world.reconcile(with_git(new, git_change(nothing.advice)))
    assert world.status.canary is not None and world.status.canary.weight == 20
    with pytest.raises(control.NotApplicable, match="not paused"):
        control.patch_for("resume", with_git(new, {"paused": False}), world.status)


def test_undo_mid_rollout_aborts_through_the_status_and_prints_the_git_change_that_makes_it_stick() -> None:
    old = canary_spec(env=[{"name": "THRESHOLD", "value": "0.7"}])
    world = stable_world(old)
    new = canary_spec(
        NEW_IMAGE, env=[{"name": "THRESHOLD", "value": "0.9"}], resources={"requests": {"cpu": "2"}}
    )
    step(world, new)
    canary = world.status.rolling
    patch = control.patch_for("undo", new, world.status)
    assert patch.target == "status"
    assert patch.body == {"rollout": {"canary": None, "blueGreen": None, "aborted": {"revision": canary}}}
    assert patch.advice.startswith(
        f"aborted the rollout of {canary}: all traffic back to {name_of(old)} now."
    )
    assert git_change(patch.advice) == {"image": old.image, "env": [{"name": "THRESHOLD", "value": "0.7"}]}
    assert "# and remove from spec: resources" in patch.advice
    assert "`modelship undo --apply`" in patch.advice

    new, world.status = command("undo", new, world.status)
    world.reconcile(new)
    assert world.status.phase == "Degraded" and world.status.aborted is not None
    assert world.services["fraud"] == {"modelship.io/model": "fraud", "modelship.io/revision": name_of(old)}
    # After the abort, undo has nothing left to do in the cluster: only the Git change.
    after = control.patch_for("undo", new, world.status)
    assert after.target is None and git_change(after.advice) == git_change(patch.advice)
    assert after.advice.startswith(f"the rollout of {canary} is aborted already: {name_of(old)} serves")

    fixed = api.ModelDeploymentSpec.model_validate(
        {k: v for k, v in {**api.dump(new), **git_change(patch.advice)}.items() if k != "resources"}
    )
    assert name_of(fixed) == name_of(old)
    world.reconcile(fixed)
    world.settle()
    world.reconcile(fixed)
    assert world.status.phase == "Healthy" and world.status.rollout is None
    with pytest.raises(control.NotApplicable, match="nothing to undo"):
        control.patch_for("undo", fixed, world.status)


def test_undo_after_a_promotion_changes_nothing_without_apply_and_names_the_previous_revision() -> None:
    old = canary_spec()
    world = stable_world(old)
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("promote", new, world.status, full=True)
    step(world, new)
    assert world.status.stable_revision == name_of(new) and world.status.rolling is None
    patch = control.patch_for("undo", new, world.status)
    assert (patch.target, patch.body) == (None, {})
    assert "nothing changed in the cluster" in patch.advice
    assert git_change(patch.advice) == {"image": old.image}
    applied = control.patch_for("undo", new, world.status, apply=True)
    assert applied.target == "spec" and applied.body["image"] == old.image
    assert "make the same change in Git" in applied.advice


def test_analysis_rounds_are_one_event_series_per_run_and_verdicts_are_transitions() -> None:
    world = stable_world(with_analysis())
    new = with_analysis(NEW_IMAGE)
    run_until(world, new, lambda s: s.stable_revision == name_of(new))
    rounds = [e for e in world.events if e.reason == "AnalysisMeasured"]
    assert len(rounds) >= 4  # two runs of two rounds each
    by_series: dict[str | None, set[str]] = {}
    for e in rounds:
        by_series.setdefault(e.series, set()).add(e.message)
    # One series per run (kind/revision), one message for all its rounds (an Event's note is immutable).
    assert set(by_series) == {f"step/{name_of(new)}"}
    assert by_series[f"step/{name_of(new)}"] == {
        f"step analysis of revision {name_of(new)} measured errors, accuracy: no metric failed "
        "(each round's values: status.analysis)"
    }
    assert all(e.series is None for e in world.events if e.reason != "AnalysisMeasured")
