"""What a pass reads of the cluster, turned into the engine's Observations: the revision
Deployments and the Services a ModelDeployment owns, the accelerator capacity, the HTTPRoute
(`routes.read`)."""

from __future__ import annotations

import dataclasses
from typing import Any

from modelship import api
from modelship.core import devices, engine, manifests, revisions, sources
from modelship.kube.storage import NODES_PATH, Forbidden, Storage, deployments_path, pods_path, service_path


def observe_deployment(obj: dict[str, Any]) -> engine.ObservedDeployment:
    spec, status = obj.get("spec", {}), obj.get("status", {})
    conditions = {c.get("type"): c for c in status.get("conditions", [])}
    return engine.ObservedDeployment(
        name=obj["metadata"]["name"],
        spec_replicas=spec.get("replicas", 1),
        generation=obj["metadata"].get("generation", 1),
        observed_generation=status.get("observedGeneration", 0),
        replicas=status.get("replicas", 0),
        updated_replicas=status.get("updatedReplicas", 0),
        available_replicas=status.get("availableReplicas", 0),
        minimum_available=conditions.get("Available", {}).get("status") == "True",
        deadline_exceeded=conditions.get("Progressing", {}).get("reason") == "ProgressDeadlineExceeded",
        placement=((spec.get("template") or {}).get("metadata") or {})
        .get("annotations", {})
        .get(devices.PLACEMENT_ANNOTATION),
    )


def owned_by(obj: dict[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences", []))


def observe_deployments(
    storage: Storage,
    owner: manifests.Owner,
    spec: api.ModelDeploymentSpec | None = None,
    listed: list[dict[str, Any]] | None = None,
) -> dict[str, engine.ObservedDeployment]:
    """The revision Deployments the ModelDeployment owns, by name; with `spec`, the revision it asks
    for says, while short of available pods, whether they refuse the model (`model_failure`).
    `listed`: its Deployments as the watch cache holds them (None: list them)."""
    if listed is None:
        listed = storage.items(
            deployments_path(owner.namespace), labelSelector=f"{manifests.MODEL_LABEL}={owner.name}"
        )
    observed = {
        obj["metadata"]["name"]: observe_deployment(obj) for obj in listed if owned_by(obj, owner.uid)
    }
    if spec is None:
        return observed
    target = revisions.revision_name(owner.name, revisions.template_of(spec))
    wanted = observed.get(target)
    # Only pods still short of ready are worth a list: a ready revision's model was accepted.
    if wanted is not None and wanted.available_replicas < wanted.spec_replicas:
        failure = model_failure(storage, owner, target, spec.model.sha256)
        observed[target] = dataclasses.replace(wanted, model_failure=failure)
    return observed


def observe_services(
    storage: Storage, owner: manifests.Owner, listed: list[dict[str, Any]] | None = None
) -> frozenset[str]:
    """The Services the ModelDeployment owns, by name (an experiment's challenger Service among
    them); `listed`: its Services as the watch cache holds them (None: list them)."""
    if listed is None:
        listed = storage.items(
            service_path(owner.namespace), labelSelector=f"{manifests.MODEL_LABEL}={owner.name}"
        )
    return frozenset(obj["metadata"]["name"] for obj in listed if owned_by(obj, owner.uid))


def model_failure(storage: Storage, owner: manifests.Owner, revision: str, sha256: str) -> str | None:
    """Whether the revision's pods refuse the model (a checksum mismatch), from their container
    statuses; None also when the operator may not list pods."""
    selector = manifests.selector_string(manifests.revision_selector(owner, revision))
    try:
        pods = storage.items(pods_path(owner.namespace), labelSelector=selector)
    except Forbidden:
        return None
    return sources.checksum_failure(pods, sha256, manifests.CONTAINER)


def observe_devices(
    storage: Storage, owner: manifests.Owner, spec: api.ModelDeploymentSpec
) -> devices.Capacity | None:
    """The accelerator resource on the nodes that hold the device: None when there is no
    accelerator, nothing counts the device (hostPath), or the operator may not list nodes and
    pods cluster-wide (namespaced installs): rollouts then surge as plain Deployments do."""
    accelerator = spec.accelerator
    if accelerator is None or not devices.counts_resource(accelerator):
        return None
    terms = devices.node_terms(accelerator)
    try:
        found: dict[str, dict[str, Any]] = {}
        for term in terms:
            selector = ",".join(f"{k}={v}" for k, v in sorted(term.items()))
            for node in storage.items(NODES_PATH, labelSelector=selector):
                found[node["metadata"]["name"]] = node
        pods: list[dict[str, Any]] = []
        for name in sorted(found):
            selector = f"spec.nodeName={name},status.phase!=Succeeded,status.phase!=Failed"
            pods += storage.items(pods_path(), fieldSelector=selector)
    except Forbidden:
        return None
    model = (owner.namespace, {manifests.MODEL_LABEL: owner.name})
    return devices.capacity(found.values(), pods, terms, accelerator.resource.name, model)
