"""What the GitOps tests share (test_ready_condition, test_kstatus, test_argocd_lua): a canary
ModelDeployment that holds at a pause step until promoted, read whole (as `kubectl get -o json`
and Argo CD read it), and the verbs as the status patches `modelship.core.control` makes."""

from __future__ import annotations

import copy
from typing import Any

from localworld.rollouts import at
from modelship import api
from modelship.core import control
from modelship.kube.storage import Storage

from .mdhelpers import example, md_path, wait_until

NAME = "fraud-detector"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "abc"}
# Two indefinite pauses: a rollout holds at each until it is promoted, so it is reliably in flight.
STEPS = [{"setWeight": 25}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}]
MANAGER = "modelship-tests"


def manifest(image: str = IMAGES["a"], **spec: Any) -> dict[str, Any]:
    doc = copy.deepcopy(example("basic.yaml"))
    doc["spec"].update(
        {
            "image": image,
            "replicas": 4,
            "strategy": {"canary": {"steps": STEPS, "scaleDownDelay": "2s"}},
            **spec,
        }
    )
    return doc


def read(kube: Storage, namespace: str) -> dict[str, Any]:
    obj = kube.get(md_path(namespace, NAME))
    assert obj is not None, f"{namespace}/{NAME} is gone"
    return obj


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in at(obj, "status.conditions", []) if c["type"] == kind), None)


def observed(obj: dict[str, Any]) -> bool:
    """The status describes the object's current spec."""
    return bool(at(obj, "status.observedGeneration") == obj["metadata"]["generation"])


def until(kube: Storage, namespace: str, what: str, probe: Any, timeout: float = 90) -> dict[str, Any]:
    """The object once `probe(obj)` holds for a status that describes its current spec."""

    def found() -> dict[str, Any] | None:
        obj = read(kube, namespace)
        return obj if observed(obj) and probe(obj) else None

    result: dict[str, Any] = wait_until(what, found, timeout=timeout, interval=0.2)
    return result


def at_pause(kube: Storage, namespace: str, step: int) -> dict[str, Any]:
    """The object once its canary holds at the pause step `step`."""
    return until(
        kube,
        namespace,
        f"the canary held at the pause step {step}",
        lambda o: at(o, "status.rollout.canary.step") == step and at(o, "status.phase") == "Paused",
    )


def set_image(kube: Storage, namespace: str, image: str) -> None:
    kube.merge(md_path(namespace, NAME), {"spec": {"image": image}}, MANAGER)


def verb(kube: Storage, namespace: str, name: str, full: bool = False) -> dict[str, Any]:
    """`modelship <name>` as the plugin does it: control's patch of the status. Returns the patch."""
    obj = read(kube, namespace)
    spec = api.ModelDeploymentSpec.model_validate(obj["spec"])
    patch = control.patch_for(name, spec, api.read_status(obj.get("status"), spec), full)
    assert patch.target == "status", patch
    kube.merge(md_path(namespace, NAME) + "/status", {"status": patch.body}, MANAGER)
    return patch.body
