"""Merging `spec.template` (a PodTemplateSpec-shaped overlay) into a revision's pod template.

The rules, as Deployment and Argo Rollouts users expect (docs/api.md, spec.template):
- the container named `model` is merged into modelship's container: env after modelship's and
  spec.env, envFrom, volumeMounts after the tmp mount, command/args replace, a probe with a
  handler (httpGet, exec, tcpSocket, grpc) replaces modelship's, one without tunes it; other
  Container fields are copied;
- other containers are sidecars, appended; initContainers and volumes are appended;
  tolerations are appended to modelship's; affinity and securityContext merge key by key;
- labels and annotations are added, modelship's own win;
- every container keeps the restricted securityContext by default; the overlay may set what the
  profile allows (admission refuses loosening it);
- the pod mounts no service account token unless the overlay names a service account (whose
  own setting then decides) or sets automountServiceAccountToken.

What the merge cannot honour (the image, ports, resources or reserved env of the model
container, a `tmp` volume, a Coral placement conflict) is refused at admission (`api`).
"""

from __future__ import annotations

import copy
from typing import Any

from modelship import api

# The restricted Pod Security Standard's container fields: the default of every container.
RESTRICTED_CONTAINER: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}
_PROBES = ("startupProbe", "livenessProbe", "readinessProbe")
_PROBE_HANDLERS = ("httpGet", "exec", "tcpSocket", "grpc")
# Model container fields the merge handles itself (image, ports, resources are refused).
_MERGED = {"name", "env", "volumeMounts", "securityContext", *_PROBES}
# Pod fields merged rather than set.
_POD_MERGED = {"containers", "initContainers", "volumes", "tolerations", "affinity", "securityContext"}
# Privileged hostPath access to the Coral (spec.accelerator.hostPath) needs these as modelship sets them.
_HOST_DEVICE_KEYS = ("privileged", "allowPrivilegeEscalation")


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: maps merge key by key, anything else in `over` replaces."""
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def restricted(container: dict[str, Any]) -> dict[str, Any]:
    """A user's sidecar or init container with the restricted securityContext under its own."""
    return {
        **container,
        "securityContext": deep_merge(RESTRICTED_CONTAINER, container.get("securityContext", {})),
    }


def merge_model_container(container: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """modelship's model container with the overlay's `model` entry merged in."""
    out = copy.deepcopy(container)
    out.update({k: copy.deepcopy(v) for k, v in over.items() if k not in _MERGED})
    out["env"] = out.get("env", []) + copy.deepcopy(over.get("env", []))
    out["volumeMounts"] = out.get("volumeMounts", []) + copy.deepcopy(over.get("volumeMounts", []))
    for probe in _PROBES:
        if probe not in over:
            continue
        handled = any(h in over[probe] for h in _PROBE_HANDLERS)
        out[probe] = copy.deepcopy(over[probe]) if handled else deep_merge(out.get(probe, {}), over[probe])
    if "securityContext" in over:
        base = out.get("securityContext", {})
        merged = deep_merge(base, over["securityContext"])
        if base.get("privileged"):
            merged.update({k: base[k] for k in _HOST_DEVICE_KEYS if k in base})
        out["securityContext"] = merged
    return out


def apply(pod_template: dict[str, Any], overlay: api.PodTemplate | None) -> dict[str, Any]:
    """`pod_template` (a Deployment's spec.template as modelship renders it) with `overlay` merged."""
    out = copy.deepcopy(pod_template)
    if overlay is None:
        return out
    meta, spec = out.setdefault("metadata", {}), out["spec"]
    if overlay.metadata is not None:
        for kind in ("labels", "annotations"):
            mine = meta.get(kind, {})
            theirs = getattr(overlay.metadata, kind) or {}
            if theirs:
                meta[kind] = {**theirs, **mine}
    over = overlay.spec or {}
    model = overlay.model_container()
    spec["containers"] = [
        merge_model_container(c, model) if c["name"] == api.MODEL_CONTAINER else c for c in spec["containers"]
    ] + [restricted(c) for c in overlay.sidecars()]
    for kind in ("initContainers",):
        added = [restricted(c) for c in over.get(kind, [])]
        if added:
            spec[kind] = spec.get(kind, []) + added
    for kind in ("volumes", "tolerations"):
        if over.get(kind):
            spec[kind] = spec.get(kind, []) + copy.deepcopy(over[kind])
    for kind in ("affinity", "securityContext"):
        if kind in over:
            spec[kind] = deep_merge(spec.get(kind, {}), over[kind])
    spec.update({k: copy.deepcopy(v) for k, v in over.items() if k not in _POD_MERGED})
    if "serviceAccountName" in over and "automountServiceAccountToken" not in over:
        # A service account is named to be used: its own automountServiceAccountToken decides.
        spec.pop("automountServiceAccountToken", None)
    return out
