"""The steering verbs (promote, pause, resume, abort, retry, undo): each one merge patch of the
ModelDeployment's status (see `modelship.core.control`; the spec only with --apply), sent with the
resourceVersion it was computed from; the operator does the rest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from modelship import api
from modelship.core import control
from modelship.kube.storage import Storage, md_path

FIELD_MANAGER = "kubectl-modelship"

_DONE = {
    "promote": "promoted",
    "pause": "paused",
    "resume": "resumed",
    "abort": "aborted",
    "retry": "retried",
    "undo": "undone",
}


def get(kube: Storage, namespace: str, name: str) -> dict[str, Any]:
    """The ModelDeployment; NotApplicable (with kubectl's wording) when there is none."""
    obj = kube.get(md_path(namespace, name))
    if obj is None:
        raise control.NotApplicable(f'modeldeployment "{name}" not found in namespace "{namespace}"')
    return obj


def run_verb(
    kube: Storage, namespace: str, name: str, verb: str, full: bool = False, apply: bool = False
) -> str:
    """Patch the ModelDeployment for `verb` (`apply`: undo and resume may patch the spec); retried
    when it changed under us. Returns what was done, and what to change in Git."""
    for _ in range(5):
        obj = get(kube, namespace, name)
        spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
        status = api.read_status(obj.get("status"), spec)
        now = datetime.now(UTC)
        patch = control.patch_for(verb, spec, status, full, now=now, by=FIELD_MANAGER, apply=apply)
        if patch.target is None:  # nothing to write: what to do instead
            return patch.advice
        version = obj["metadata"]["resourceVersion"]
        if kube.patch_md(namespace, name, patch.target, patch.body, version, FIELD_MANAGER) is None:
            continue  # the operator wrote meanwhile: decide again on the fresh object
        done = "fully promoted" if full else _DONE[verb]
        return f"modeldeployment.{api.GROUP}/{name} {done}" + (f"\n{patch.advice}" if patch.advice else "")
    raise control.NotApplicable("the ModelDeployment kept changing; try again")
