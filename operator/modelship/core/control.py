"""Manual control, pure: each verb is a merge patch of the ModelDeployment's status.

The spec belongs to whoever wrote the manifest, often a GitOps tool (Argo CD, Flux) that puts it
back as it is in Git; so no verb rewrites it. The status subresource is modelship's own: the
operator reads the fields below on its next pass and carries them over in its own status writes,
and a tool that applies the manifest never touches them. Status patches are sent with the
object's resourceVersion, so a verb never overwrites a pass it did not see.

- promote: a canary's `status.rollout.canary.step` + 1 (ends the current pause or step); a
  blue/green preview's `status.rollout.blueGreen.phase` Preview -> Promoted (switch), or
  Switched -> Accepted (accept the post-promotion analysis as it is)
- promote --full: `promoteFull: true` in the rollout's shape (skip the remaining steps or gates)
- pause: `status.pause: {by, at}` (holds like `spec.paused`, the declarative pause kept in Git)
- resume: removes `status.pause`; a `spec.paused: true` stays until the manifest changes
- abort: `status.rollout` becomes `{aborted: {revision}}` (traffic to stable, phase Degraded)
- retry: clears `status.rollout` (the rollout starts again from step 0)
- undo: what the spec should say lives in Git, so undo aborts a rollout in progress (status only:
  traffic back to stable at once) and returns the Git change that makes it stick: the stable
  revision's image, model, env, ... (mid-rollout or after an abort), else the previous stable
  revision's (`status.previousTemplate`).

`apply=True` (`--apply`, for a ModelDeployment no GitOps tool manages): undo and resume patch the
spec itself, as a person editing the manifest in place would.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import yaml

from modelship import api

VERBS = ("promote", "pause", "resume", "abort", "retry", "undo")
BY = "kubectl-modelship"  # who `status.pause` says asked, unless the caller names someone


class NotApplicable(Exception):
    """The verb makes no sense in the object's current state (the message says why)."""


@dataclass(frozen=True)
class Patch:
    """What a verb does: one merge patch of the spec or the status (`target` None: nothing to change
    in the cluster), and `advice` for the person, such as the change to make in Git."""

    target: Literal["spec", "status"] | None
    body: dict[str, Any]  # the merge patch of that part, camelCase
    advice: str = ""


def patch_for(
    verb: str,
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    full: bool = False,
    *,
    now: datetime | None = None,
    by: str = BY,
    apply: bool = False,
) -> Patch:
    """The patch for `verb` on an object with this spec and status. `now` and `by` stamp a pause;
    `apply` lets undo and resume change the spec (only where no GitOps tool owns it)."""
    if verb == "pause":
        return _paused(spec, status, now, by)
    if verb == "resume":
        return _resumed(spec, status, apply)
    if verb == "retry":
        if status.aborted is None:
            raise NotApplicable("nothing to retry: no rollout was aborted")
        return Patch("status", {"rollout": None})
    if verb == "undo":
        return _undone(spec, status, apply)
    revision = status.rolling
    if revision is None:
        raise NotApplicable(f"no rollout in progress (phase {status.phase or 'unknown'})")
    if verb == "abort":
        return Patch("status", _aborted(revision))
    if verb == "promote":
        return Patch("status", {"rollout": _promoted(spec, status, full)})
    raise ValueError(f"unknown verb {verb!r}")


def _paused(
    spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, now: datetime | None, by: str
) -> Patch:
    if status.pause is not None:  # keep who asked first, and when
        return Patch(None, {}, f"already paused by {status.pause.by} (status.pause)")
    pause: dict[str, Any] = {"by": by} | ({"at": now.strftime("%Y-%m-%dT%H:%M:%SZ")} if now else {})
    also = " (spec.paused is true as well)" if spec.paused else ""
    return Patch("status", {"pause": pause}, f"status.pause is set{also}; `modelship resume` continues")


def _resumed(spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, apply: bool) -> Patch:
    # spec.paused is the manifest's: the change is made in Git (or with --apply, here).
    in_git = f"spec.paused is true in the manifest; change it in Git:\n{_git({'paused': False}, ())}"
    or_apply = _OR_APPLY.format(verb="resume")
    if status.pause is not None:
        if not spec.paused:
            return Patch("status", {"pause": None})
        return Patch(
            "status", {"pause": None}, f"status.pause removed, but still paused: {in_git}\n{or_apply}"
        )
    if not spec.paused:
        raise NotApplicable("not paused: neither spec.paused nor status.pause is set")
    if apply:
        return Patch("spec", {"paused": False}, _APPLIED)
    return Patch(None, {}, f"nothing changed in the cluster: {in_git}\n{or_apply}")


def _undone(spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, apply: bool) -> Patch:
    # Mid-rollout (or after an abort) back to stable; otherwise back to the revision before it.
    rolling = status.rolling is not None or status.aborted is not None
    back_to = status.stable_template if rolling else status.previous_template
    if back_to is None:
        raise NotApplicable("nothing to undo: no rollout in progress and no previous stable revision")
    template, current = api.dump(back_to), api.dump(spec)
    changed = {k: template[k] for k in _TEMPLATE_FIELDS if k in template and template[k] != current.get(k)}
    removed = tuple(k for k in _TEMPLATE_FIELDS if k in current and k not in template)
    if not changed and not removed:
        raise NotApplicable("nothing to undo: the spec already asks for that revision")
    if apply:
        return Patch(
            "spec", {k: _merge_patch(current.get(k), template.get(k)) for k in _TEMPLATE_FIELDS}, _APPLIED
        )
    git = f"{_git(changed, removed)}\n{_OR_APPLY.format(verb='undo')}"
    stable = status.stable_revision
    if status.rolling is not None:
        first = f"aborted the rollout of {status.rolling}: all traffic back to {stable} now."
        stick = f"The spec still asks for {status.rolling}; to make the undo stick, put the stable revision"
        return Patch("status", _aborted(status.rolling), f"{first}\n{stick} {stable} in Git:\n{git}")
    if status.aborted is not None:
        first = f"the rollout of {status.aborted.revision} is aborted already: {stable} serves all traffic."
        stick = f"To make the undo stick, put the stable revision {stable} in Git:"
        return Patch(None, {}, f"{first}\n{stick}\n{git}")
    first = "nothing changed in the cluster: the spec is the manifest's."
    return Patch(None, {}, f"{first}\nTo go back, put the previous stable revision in Git:\n{git}")


_APPLIED = (
    "patched the spec here (--apply): if a GitOps tool manages this ModelDeployment, make the same "
    "change in Git, or it puts the old spec back"
)
_OR_APPLY = (
    "(or `modelship {verb} --apply` patches the spec here, for a ModelDeployment no GitOps tool manages)"
)


def _git(changed: dict[str, Any], removed: tuple[str, ...]) -> str:
    """The change to make in the manifest, as YAML to paste under its `spec:`."""
    text = yaml.safe_dump({"spec": changed}, sort_keys=False, default_flow_style=False).rstrip()
    if removed:
        text += "\n# and remove from spec: " + ", ".join(removed)
    return text


def _aborted(revision: str) -> dict[str, Any]:
    return {"rollout": {"canary": None, "blueGreen": None, "aborted": {"revision": revision}}}


def _promoted(spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, full: bool) -> dict[str, Any]:
    """The merge patch of `status.rollout` that promotes the rollout in progress."""
    if status.canary is not None:
        if full:
            return {"canary": {"promoteFull": True}}
        if status.canary.step >= len(spec.strategy.steps):
            # Past the last step is no step at all: the status would say a step that does not exist.
            raise NotApplicable("every canary step is done: the promotion is under way")
        return {"canary": {"step": status.canary.step + 1, "pauseStartTime": None}}
    assert status.blue_green is not None
    if full:
        return {"blueGreen": {"promoteFull": True}}
    phase = status.blue_green.phase
    if phase == "Preview":
        return {"blueGreen": {"phase": "Promoted"}}
    if phase == "Switched":
        return {"blueGreen": {"phase": "Accepted"}}
    raise NotApplicable(
        f"preview {status.blue_green.revision} is already promoted (phase {phase}); "
        "`modelship promote --full` skips the remaining gates"
    )


def _merge_patch(current: Any, target: Any) -> Any:
    """The JSON merge patch (RFC 7386) that turns `current` into `target`: objects merge, so keys
    only `current` has (a label the undone spec.template added) must be nulled."""
    if not isinstance(current, dict) or not isinstance(target, dict):
        return target
    patch: dict[str, Any] = {k: None for k in current if k not in target}
    patch.update({k: _merge_patch(current.get(k), v) for k, v in target.items()})
    return patch


# The spec fields a revision template holds (null removes a field the stable revision did not set).
_TEMPLATE_FIELDS = tuple((info.alias or name) for name, info in api.RevisionTemplate.model_fields.items())
