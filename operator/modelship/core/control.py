"""Manual control, pure: each verb is a merge patch of the ModelDeployment's spec or status.

The CR stays the only state: the operator reads these fields on its next pass, and
GitOps tools (and `kubectl get -o yaml`) see what a person did. Status patches are
sent with the object's resourceVersion, so a verb never overwrites a pass it did not see.

- promote: a canary's `status.rollout.canary.step` + 1 (ends the current pause or step); a
  blue/green preview's `status.rollout.blueGreen.phase` Preview -> Promoted (switch), or
  Switched -> Accepted (accept the post-promotion analysis as it is)
- promote --full: `promoteFull: true` in the rollout's shape (skip the remaining steps or gates)
- pause / resume: `spec.paused`
- abort: `status.rollout` becomes `{aborted: {revision}}` (traffic to stable, phase Degraded)
- retry: clears `status.rollout` (the rollout starts again from step 0)
- undo: `spec` back to the stable revision's template mid-rollout (an immediate rollback),
  else to the previous stable revision's (`status.previousTemplate`)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from modelship import api

VERBS = ("promote", "pause", "resume", "abort", "retry", "undo")


class NotApplicable(Exception):
    """The verb makes no sense in the object's current state (the message says why)."""


@dataclass(frozen=True)
class Patch:
    target: Literal["spec", "status"]
    body: dict[str, Any]  # the merge patch of that part, camelCase


def patch_for(
    verb: str, spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus, full: bool = False
) -> Patch:
    if verb == "pause":
        return Patch("spec", {"paused": True})
    if verb == "resume":
        return Patch("spec", {"paused": False})
    if verb == "retry":
        if status.aborted is None:
            raise NotApplicable("nothing to retry: no rollout was aborted")
        return Patch("status", {"rollout": None})
    if verb == "undo":
        # Mid-rollout (or after an abort) back to stable; otherwise back to the revision before it.
        rolling = status.rolling is not None or status.aborted is not None
        back_to = status.stable_template if rolling else status.previous_template
        if back_to is None:
            raise NotApplicable("nothing to undo: no rollout in progress and no previous stable revision")
        template, current = api.dump(back_to), api.dump(spec)
        return Patch("spec", {k: _merge_patch(current.get(k), template.get(k)) for k in _TEMPLATE_FIELDS})
    revision = status.rolling
    if revision is None:
        raise NotApplicable(f"no rollout in progress (phase {status.phase or 'unknown'})")
    if verb == "abort":
        return Patch(
            "status", {"rollout": {"canary": None, "blueGreen": None, "aborted": {"revision": revision}}}
        )
    if verb == "promote":
        return Patch("status", {"rollout": _promoted(status, full)})
    raise ValueError(f"unknown verb {verb!r}")


def _promoted(status: api.ModelDeploymentStatus, full: bool) -> dict[str, Any]:
    """The merge patch of `status.rollout` that promotes the rollout in progress."""
    if status.canary is not None:
        if full:
            return {"canary": {"promoteFull": True}}
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
