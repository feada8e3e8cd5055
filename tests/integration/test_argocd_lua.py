"""Argo CD's view of a ModelDeployment: deploy/argocd's health check and resource actions, run by a
real Lua 5.1 interpreter (Argo CD's Lua) the way Argo CD runs them (tests/integration/argocd.lua),
on the objects the real API server holds while the operator drives a rollout through each phase.

An action's result is applied as Argo CD applies it: the JSON merge patch from the live object to
the returned one, its `status` part through the status subresource. Each must be the patch the
kubectl plugin sends (`modelship.core.control`), and the operator must act on it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devcluster.cluster import ExistingCluster
from localworld.rollouts import at, merged
from modelship import api
from modelship.core import control
from modelship.kube.storage import Storage, merge_patch

from .gitopshelpers import IMAGES, MANAGER, at_pause, condition, manifest, observed, read, set_image, until
from .mdhelpers import REPO, Operator, crd_installed, create_md, deploy_stable, kube, md_path, operator

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration

ARGOCD = REPO / "deploy" / "argocd"
HARNESS = Path(__file__).with_name("argocd.lua")
PATCH_FILE = "deploy/argocd/argocd-cm.yaml"


class LuaError(Exception):
    """The script raised an error (Argo CD shows its message and changes nothing)."""


@pytest.fixture(scope="module")
def lua() -> str:
    found = shutil.which("lua5.1")
    if found is None:
        raise RuntimeError("lua5.1 is not installed: `make lua` installs it (and lua-dkjson) from Debian")
    return found


def run(lua: str, script: str, obj: dict[str, Any]) -> Any:
    done = subprocess.run(
        [lua, str(HARNESS), str(ARGOCD / script)], input=json.dumps(obj), capture_output=True, text=True
    )
    if done.returncode == 1:
        raise LuaError(done.stderr.strip())
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def health(lua: str, obj: dict[str, Any]) -> tuple[str, str]:
    hs = run(lua, "health.lua", obj)
    return hs["status"], hs["message"]


def enabled(lua: str, obj: dict[str, Any]) -> set[str]:
    return {name for name, action in run(lua, "actions/discovery.lua", obj).items() if not action["disabled"]}


def act(lua: str, kube: Storage, namespace: str, name: str) -> dict[str, Any]:
    """Run action `name` on the live object and apply its result as Argo CD does; return the status
    merge patch it made."""
    live = read(kube, namespace)
    patch = merge_patch(live, run(lua, f"actions/{name}/action.lua", live))
    assert set(patch) == {"status"}, f"action {name} changed more than the status: {patch}"
    kube.merge(md_path(namespace, live["metadata"]["name"]) + "/status", patch, MANAGER)
    status: dict[str, Any] = patch["status"]
    return status


def plugin_patch(obj: dict[str, Any], verb: str, full: bool = False) -> dict[str, Any]:
    spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
    return control.patch_for(verb, spec, api.read_status(obj.get("status"), spec), full).body


def same_effect(obj: dict[str, Any], patch: dict[str, Any], verb: str, full: bool = False) -> bool:
    """The action's status patch leaves `obj`'s status as the plugin's patch for `verb` would."""
    status = obj.get("status") or {}
    return bool(merged(status, patch) == merged(status, plugin_patch(obj, verb, full)))


def test_health_and_actions_through_a_canary_rollout(
    lua: str, kube: Storage, namespace: str, operator: Operator
) -> None:
    deploy_stable(kube, namespace, manifest())
    stable = read(kube, namespace)
    assert health(lua, stable)[0] == "Healthy"
    assert enabled(lua, stable) == {"pause"}

    set_image(kube, namespace, IMAGES["b"])
    # Every state the object goes through on the way to the first pause, as Argo CD would see it.
    seen: list[tuple[str, str]] = []
    held: dict[str, Any] | None = None
    for _ in range(600):
        obj = read(kube, namespace)
        if observed(obj) and (not seen or seen[-1][1] != obj["metadata"]["resourceVersion"]):
            seen.append((health(lua, obj)[0], obj["metadata"]["resourceVersion"]))
        if observed(obj) and at(obj, "status.phase") == "Paused":
            held = obj
            break
        time.sleep(0.1)
    assert held is not None, seen
    assert "Progressing" in [h for h, _ in seen], seen  # the canary's pods coming up, then its weight
    state, message = health(lua, held)
    assert state == "Suspended" and message.startswith("CanaryPauseStep"), message
    assert enabled(lua, held) == {"promote", "promote-full", "abort", "pause"}

    # pause / resume: status.pause, as `modelship pause` sets it (by argocd, now).
    body = act(lua, kube, namespace, "pause")
    assert body == {"pause": {"by": "argocd", "at": body["pause"]["at"]}}
    by_hand = until(
        kube, namespace, "held by status.pause", lambda o: condition(o, "Paused")["reason"] == "PausedByUser"
    )  # type: ignore[index]
    state, message = health(lua, by_hand)
    assert state == "Suspended" and message.startswith("PausedByUser"), message
    assert "resume" in enabled(lua, by_hand) and "pause" not in enabled(lua, by_hand)
    assert same_effect(by_hand, act(lua, kube, namespace, "resume"), "resume")
    resumed = until(
        kube, namespace, "status.pause gone", lambda o: condition(o, "Paused")["reason"] == "CanaryPauseStep"
    )  # type: ignore[index]
    assert health(lua, resumed)[0] == "Suspended"

    # promote: the next step, then the second pause.
    assert same_effect(resumed, act(lua, kube, namespace, "promote"), "promote")
    at_pause(kube, namespace, step=3)

    # abort: the candidate refused, stable serves: Suspended (not Degraded) until retry.
    before = read(kube, namespace)
    assert same_effect(before, act(lua, kube, namespace, "abort"), "abort")
    # Stalled with Available: on a loaded machine a status that was Stalled and not yet Available
    # again was seen once (Degraded for that moment); this step judges the settled one.
    aborted = until(
        kube,
        namespace,
        "the rollout aborted, stable available",
        lambda o: (
            condition(o, "Stalled")["status"] == "True" and condition(o, "Available")["status"] == "True"
        ),  # type: ignore[index]
    )
    state, message = health(lua, aborted)
    assert state == "Suspended" and "refused" in message and "Aborted" in message, message
    assert condition(aborted, "Available")["status"] == "True"  # type: ignore[index]
    assert enabled(lua, aborted) == {"retry", "pause"}
    with pytest.raises(LuaError, match="no rollout in progress"):
        run(lua, "actions/promote/action.lua", aborted)

    # retry: from step 0 again; promote-full: straight to stable.
    assert same_effect(aborted, act(lua, kube, namespace, "retry"), "retry")
    again = at_pause(kube, namespace, step=1)
    assert health(lua, again)[0] == "Suspended"
    assert same_effect(again, act(lua, kube, namespace, "promote-full"), "promote", full=True)
    done = until(kube, namespace, "the canary promoted", lambda o: at(o, "status.phase") == "Healthy")
    assert health(lua, done)[0] == "Healthy"


def test_a_revision_that_cannot_come_up_is_degraded(
    lua: str, kube: Storage, namespace: str, operator: Operator
) -> None:
    # Its pods ask for a device no node has: never scheduled, the Deployment's deadline passes.
    doc = manifest(progressDeadline="5s", resources={"limits": {"example.com/no-such-device": 1}})
    create_md(kube, namespace, doc)
    stuck = until(
        kube, namespace, "the revision stuck", lambda o: at(o, "status.phase") == "Degraded", timeout=120
    )
    state, message = health(lua, stuck)
    assert state == "Degraded" and message.startswith("ProgressDeadlineExceeded"), message
    assert condition(stuck, "Available")["status"] == "False"  # type: ignore[index]


# The same scripts on statuses the rollout above does not reach (blue/green, an older operator, a
# spec not observed yet), built by hand in the shapes modelship writes.
BASE = {
    "apiVersion": "modelship.io/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "m", "generation": 2},
}
SPEC = manifest()["spec"]
ROLLOUTS: dict[str, dict[str, Any] | None] = {
    "canary": {
        "canary": {"revision": "m-2", "step": 1, "weight": 25, "pauseStartTime": "2026-01-01T00:00:00Z"}
    },
    "preview": {"blueGreen": {"revision": "m-2", "phase": "Preview"}},
    "promoted": {"blueGreen": {"revision": "m-2", "phase": "Promoted"}},
    "switched": {"blueGreen": {"revision": "m-2", "phase": "Switched"}},
    "aborted": {"aborted": {"revision": "m-2", "reason": "AnalysisFailed"}},
    "none": None,
}


def shaped(rollout: dict[str, Any] | None, **status: Any) -> dict[str, Any]:
    body = {"observedGeneration": 2, "stableRevision": "m-1", **status}
    if rollout is not None:
        body["rollout"] = rollout
    return {**BASE, "spec": SPEC, "status": body}


@pytest.mark.parametrize("shape", ROLLOUTS)
@pytest.mark.parametrize(
    ("action", "verb", "full"),
    [
        ("promote", "promote", False),
        ("promote-full", "promote", True),
        ("abort", "abort", False),
        ("retry", "retry", False),
    ],
)
def test_each_action_makes_the_plugins_patch_or_refuses_where_the_plugin_does(
    lua: str, shape: str, action: str, verb: str, full: bool
) -> None:
    obj = shaped(ROLLOUTS[shape])
    offered = action in enabled(lua, obj)
    try:
        expected: dict[str, Any] | None = plugin_patch(obj, verb, full)
    except control.NotApplicable:
        expected = None
    assert offered == (expected is not None), (shape, action)
    if expected is None:
        with pytest.raises(LuaError):
            run(lua, f"actions/{action}/action.lua", obj)
        return
    patch = merge_patch(obj, run(lua, f"actions/{action}/action.lua", obj))
    assert set(patch) == {"status"} and same_effect(obj, patch["status"], verb, full), patch


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({**BASE, "spec": SPEC}, ("Progressing", "Waiting for modelship to report a status")),
        (
            {**shaped(None, phase="Healthy"), "metadata": {"name": "m", "generation": 3}},
            ("Progressing", "Waiting for modelship to observe generation 3"),
        ),
        # An operator from before the Ready condition: the phase decides.
        (shaped(None, phase="Healthy"), ("Healthy", "phase Healthy")),
        (shaped(ROLLOUTS["canary"], phase="Paused"), ("Suspended", "phase Paused")),
        (shaped(ROLLOUTS["aborted"], phase="Degraded"), ("Degraded", "phase Degraded")),
    ],
)
def test_health_before_the_operator_wrote_its_conditions(
    lua: str, obj: dict[str, Any], expected: tuple[str, str]
) -> None:
    assert health(lua, obj) == expected


def test_a_stalled_model_with_no_refused_rollout_is_degraded(lua: str) -> None:
    conditions = [
        {"type": "Available", "status": "True", "reason": "ReplicasAvailable", "message": ""},
        {"type": "Ready", "status": "False", "reason": "HTTPRouteMissing", "message": "no route"},
        {"type": "Stalled", "status": "True", "reason": "HTTPRouteMissing", "message": "no route"},
    ]
    assert health(lua, shaped(None, phase="Healthy", conditions=conditions)) == (
        "Degraded",
        "HTTPRouteMissing: no route",
    )


def test_the_documented_patch_installs_both_keys_into_argocd_cm(
    api_client: Any, cluster: ExistingCluster
) -> None:
    # docs/gitops.md's command, as written, against a ConfigMap like the one Argo CD installs.
    core = client.CoreV1Api(api_client)
    created = False
    try:
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="argocd")))
        created = True
    except client.exceptions.ApiException as err:
        assert err.status == 409, err
    try:
        cm = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name="argocd-cm"), data={"url": "https://argocd.example"}
        )
        core.create_namespaced_config_map("argocd", cm)
        # docs/gitops.md, as written:
        command = "kubectl -n argocd patch configmap argocd-cm --type merge --patch-file " + PATCH_FILE
        args = [str(cluster.bin_dir / "kubectl"), *command.split()[1:]]
        subprocess.run(args, cwd=REPO, env=cluster.env, check=True, capture_output=True)
        data = core.read_namespaced_config_map("argocd-cm", "argocd").data
        assert data["url"] == "https://argocd.example"  # the install's own keys stay
        assert (
            data["resource.customizations.health.modelship.io_ModelDeployment"]
            == (ARGOCD / "health.lua").read_text()
        )
        assert "discovery.lua" in data["resource.customizations.actions.modelship.io_ModelDeployment"]
    finally:
        if created:
            core.delete_namespace("argocd")
        else:
            core.delete_namespaced_config_map("argocd-cm", "argocd")
