"""Manual control, pure: each verb is a merge patch of the ModelDeployment's spec or status.

The CR stays the only state: the operator reads these fields on its next pass, and
GitOps tools (and `kubectl get -o yaml`) see what a person did. Status patches are
sent with the object's resourceVersion, so a verb never overwrites a pass it did not see.

- promote: `status.currentStep` + 1 (ends the current pause or step)
- promote --full: `status.promoteFull: true` (skip the remaining steps)
- pause / resume: `spec.paused`
- abort: `status.abortedRevision` = the canary (traffic to stable, phase Degraded)
- retry: clears `status.abortedRevision` (the rollout starts again from step 0)
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
    canary = status.canary_revision
    if verb == "pause":
        return Patch("spec", {"paused": True})
    if verb == "resume":
        return Patch("spec", {"paused": False})
    if verb == "retry":
        if status.aborted_revision is None:
            raise NotApplicable("nothing to retry: no rollout was aborted")
        return Patch("status", {"abortedRevision": None})
    if verb == "undo":
        # Mid-rollout (or after an abort) back to stable; otherwise back to the revision before it.
        rolling = canary is not None or status.aborted_revision is not None
        back_to = status.stable_template if rolling else status.previous_template
        if back_to is None:
            raise NotApplicable("nothing to undo: no rollout in progress and no previous stable revision")
        template = api.dump(back_to)
        return Patch("spec", {k: template.get(k) for k in _TEMPLATE_FIELDS})
    if canary is None:
        raise NotApplicable(f"no rollout in progress (phase {status.phase or 'unknown'})")
    if verb == "abort":
        return Patch("status", {"abortedRevision": canary})
    if verb == "promote":
        if full:
            return Patch("status", {"promoteFull": True})
        return Patch("status", {"currentStep": (status.current_step or 0) + 1, "pauseStartTime": None})
    raise ValueError(f"unknown verb {verb!r}")


# The spec fields a revision template holds (null removes a field the stable revision did not set).
_TEMPLATE_FIELDS = tuple((info.alias or name) for name, info in api.RevisionTemplate.model_fields.items())
