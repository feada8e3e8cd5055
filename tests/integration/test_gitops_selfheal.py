"""No fight with a GitOps tool: after every verb (pause, promote, resume, abort, retry, undo) an
Argo-CD-like self-heal re-applies the manifest from Git with server-side apply, from its own field
manager, and finds nothing to take back: the apply needs no force (no conflict), the spec's
generation does not move, and what the verb did still holds and the operator acts on it.

The operator runs as a subprocess, the verbs are the plugin's (`run_verb`), pods are KWOK pods.
"""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
import yaml

from localworld.rollouts import at
from modelship.kube import storage
from modelship.kube.storage import APPLY, Storage
from modelship.plugin import run_verb

from .mdhelpers import Operator, crd_installed, example, kube, md_path, operator, revision, wait_until

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

NAME = "fraud-detector"
GITOPS = "argocd-controller"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}
STEPS = [{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
REVISION, STEP, WEIGHT = "rollout.canary.revision", "rollout.canary.step", "rollout.canary.weight"


def in_git(image: str) -> dict[str, Any]:
    """The manifest as it is in Git."""
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"].update(
        {"image": image, "replicas": 4, "strategy": {"canary": {"steps": STEPS, "scaleDownDelay": "2s"}}}
    )
    return doc


def sync(kube: Storage, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """Argo CD's sync (and self-heal) with server-side apply: without force, so a field another
    manager took over would be a conflict (409) instead of silently won back."""
    body = {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace}}
    return kube.request(
        "PATCH", md_path(namespace, NAME), query={"fieldManager": GITOPS}, body=body, content_type=APPLY
    )


def obj(kube: Storage, namespace: str) -> dict[str, Any]:
    return kube.get(md_path(namespace, NAME)) or {}


def verb_then_self_heal(kube: Storage, namespace: str, verb: str, manifest: dict[str, Any]) -> str:
    """The verb, then the self-heal: it changes nothing the verb did (not the spec, not the status)."""
    before = obj(kube, namespace)["metadata"]["generation"]
    said = run_verb(kube, namespace, NAME, verb)
    verbed = obj(kube, namespace)
    assert verbed["metadata"]["generation"] == before, f"{verb} changed the spec"
    healed = sync(kube, namespace, manifest)
    assert healed["metadata"]["generation"] == before, f"the self-heal changed the spec after {verb}"
    fields = healed["metadata"]["managedFields"]
    owners = {f["manager"] for f in fields if "f:spec" in (f.get("fieldsV1") or {})}
    assert owners == {GITOPS}, f"{verb}: someone else owns spec fields: {owners}"
    return said


def until(kube: Storage, namespace: str, what: str, **fields: Any) -> dict[str, Any]:
    """The status once every field (a dotted path) has its value."""

    def probe() -> dict[str, Any] | None:
        current = obj(kube, namespace).get("status") or {}
        return current if all(at(current, k) == v for k, v in fields.items()) else None

    found: dict[str, Any] = wait_until(what, probe, timeout=60, interval=0.2)
    return found


def paused_reason(status: dict[str, Any]) -> str:
    return str(next(c for c in status["conditions"] if c["type"] == "Paused")["reason"])


def test_a_self_heal_after_each_verb_takes_nothing_back(
    kube: Storage, namespace: str, operator: Operator
) -> None:
    old, new = in_git(IMAGES["a"]), in_git(IMAGES["b"])
    stable, canary = revision(old), revision(new)
    sync(kube, namespace, old)
    until(kube, namespace, "a Healthy stable revision", phase="Healthy", stableRevision=stable)
    sync(kube, namespace, new)  # a commit: the new image
    until(kube, namespace, "the canary at its pause{} step", **{REVISION: canary, WEIGHT: 20, STEP: 1})

    # pause: status.pause; still there after the self-heal, and it holds a promote.
    verb_then_self_heal(kube, namespace, "pause", new)
    held = until(kube, namespace, "paused by the plugin", **{"pause.by": "kubectl-modelship"})
    verb_then_self_heal(kube, namespace, "promote", new)
    held = until(kube, namespace, "promoted to step 2, held", **{STEP: 2})
    time.sleep(2)  # the operator's passes meanwhile keep both
    held = obj(kube, namespace)["status"]
    assert (at(held, STEP), at(held, WEIGHT), held["phase"]) == (2, 20, "Paused")
    assert paused_reason(held) == "PausedByUser" and held["pause"]["by"] == "kubectl-modelship"

    # resume: the operator moves on to 50% and the next pause{}.
    verb_then_self_heal(kube, namespace, "resume", new)
    resumed = until(kube, namespace, "the canary at 50% after resume", **{WEIGHT: 50, STEP: 3})
    assert "pause" not in resumed

    # abort: stays aborted, all traffic on stable, though Git still names the new image.
    verb_then_self_heal(kube, namespace, "abort", new)
    until(kube, namespace, "aborted", phase="Degraded", **{"rollout.aborted.revision": canary})
    service = storage.service_path(namespace, NAME)

    def on_stable() -> bool:
        return bool((kube.get(service) or {})["spec"]["selector"].get("modelship.io/revision") == stable)

    wait_until("the Service on stable", on_stable)
    time.sleep(2)
    assert set(obj(kube, namespace)["status"]["rollout"]) == {"aborted"}

    # retry: the rollout starts again from step 0 and walks to the first pause{}.
    verb_then_self_heal(kube, namespace, "retry", new)
    until(kube, namespace, "the retried canary at 20%", **{REVISION: canary, WEIGHT: 20, STEP: 1})

    # undo: an abort through the status, and the Git change that makes it stick.
    said = verb_then_self_heal(kube, namespace, "undo", new)
    until(kube, namespace, "undone: aborted", phase="Degraded", **{"rollout.aborted.revision": canary})
    change = yaml.safe_load(said[said.index("\nspec:") : said.index("\n(or `modelship undo --apply`")])
    assert change == {"spec": {"image": IMAGES["a"]}}
    fixed = copy.deepcopy(new)
    fixed["spec"].update(change["spec"])  # the commit the advice asks for
    sync(kube, namespace, fixed)
    healthy = until(kube, namespace, "back on the stable revision", phase="Healthy", stableRevision=stable)
    assert "rollout" not in healthy
    wait_until(
        "only the stable revision left",
        lambda: {d["metadata"]["name"] for d in kube.items(storage.deployments_path(namespace))} == {stable},
        timeout=30,
    )
