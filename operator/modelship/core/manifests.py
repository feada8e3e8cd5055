"""Pure rendering of the objects a ModelDeployment owns: revision Deployments and Services.

Everything here is a function of its arguments; the engine decides *which* objects
to want, this module says what they look like.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelship import api
from modelship.core import devices, overlay, sources

MODEL_LABEL = "modelship.io/model"
REVISION_LABEL = "modelship.io/revision"
MANAGED_BY = {"app.kubernetes.io/managed-by": "modelship"}
CONTAINER = api.MODEL_CONTAINER
PORT_NAME = "http"
SERVICE_PORT = 80
# The serving image's health endpoints (serving-image/): live and ready.
LIVENESS_PATH = "/healthz"
READINESS_PATH = "/readyz"
PRE_STOP_SECONDS = 5  # how long a deleted pod serves on while load balancers drop it
PROBE_TIMEOUT_SECONDS = 5

Manifest = dict[str, Any]
# The key a ModelDeployment's pods share to sign feedback tokens (serving-image/modelserver/
# feedbacktoken.py): a Secret the operator creates once per ModelDeployment, key `key`.
FEEDBACK_KEY_SECRET_KEY = "key"


def feedback_key_secret(owner_name: str) -> str:
    return f"{owner_name}-feedback-key"


@dataclass(frozen=True)
class Owner:
    """The ModelDeployment that owns everything rendered here."""

    name: str
    namespace: str
    uid: str
    generation: int = 1


def owner_reference(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": api.API_VERSION,
        "kind": api.KIND,
        "name": owner.name,
        "uid": owner.uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _metadata(owner: Owner, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": {**MANAGED_BY, **labels},
        "ownerReferences": [owner_reference(owner)],
    }


def revision_selector(owner: Owner, revision: str) -> dict[str, str]:
    return {MODEL_LABEL: owner.name, REVISION_LABEL: revision}


def selector_string(labels: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def service_host(service: str) -> str:
    """A Service's cluster IP as a `$(VAR)` reference to the variable Kubernetes gives pods for the
    Services of their namespace that existed when they started (expanded in `env` and `args`)."""
    return f"$({service.upper().replace('-', '_')}_SERVICE_HOST)"


def _env(owner: Owner, template: api.RevisionTemplate) -> list[dict[str, Any]]:
    canary = f"{owner.name}-canary"
    managed: list[dict[str, Any]] = [
        {"name": "MODEL_NAME", "value": template.model.name},
        {"name": "MODEL_VERSION", "value": template.model.version},
        {"name": "MODEL_SHA256", "value": template.model.sha256},
        {"name": "PORT", "value": str(template.port)},
        {"name": "HOST", "value": "0.0.0.0"},  # the server's default (loopback) is unreachable in a pod
        # An image cannot contain its own digest: the server's /metadata shows the one deployed.
        {"name": "IMAGE", "value": template.image},
        {"name": "IMAGE_DIGEST", "value": template.image.rpartition("@")[2]},
        # Feedback through any load balancer: tokens name this pod, signed with the shared key
        # (optional: without the Secret the server issues no tokens and feedback needs stickiness).
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {
            "name": "FEEDBACK_KEY",
            "valueFrom": {
                "secretKeyRef": {
                    "name": feedback_key_secret(owner.name),
                    "key": FEEDBACK_KEY_SECRET_KEY,
                    "optional": True,
                }
            },
        },
        # Shadow steps (core/shadow.py): the stable pods copy marked requests to the candidate's
        # Service, a fixed address; a pod knows its revision, so the candidate's never copy to themselves.
        # Through the Service's variable where the kubelet set it (no cluster DNS needed), else DNS.
        {"name": "SHADOW_TARGET", "value": f"{service_host(canary)}:{SERVICE_PORT},{canary}:{SERVICE_PORT}"},
        {
            "name": "MODELSHIP_REVISION",
            "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{REVISION_LABEL}']"}},
        },
    ]
    if template.accelerator is not None:
        managed.append({"name": "ACCELERATOR", "value": template.accelerator.type})
    user = [{"name": e.name, "value": e.value} for e in template.env or []]
    return managed + user


def _resources(template: api.RevisionTemplate, placement: devices.Placement) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {}
    if template.resources is not None:
        for kind in ("requests", "limits"):
            values = getattr(template.resources, kind)
            if values:
                out[kind] = {k: str(v) for k, v in values.items()}
    accelerator = template.accelerator
    if accelerator is not None and placement == "device" and devices.counts_resource(accelerator):
        # Extended resources must be requested in limits (requests default to them).
        res = accelerator.resource
        out.setdefault("limits", {})[res.name] = str(res.count)
    return out


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": PORT_NAME},
        "periodSeconds": period,
        "failureThreshold": failures,
        # A model server on a busy node (CPU throttled, a burst of inference) can take seconds to
        # answer: at 2 s, three slow answers in a row took a fresh canary's only pod out of its
        # Service under load, and the gateway answered 503 for its whole share.
        "timeoutSeconds": PROBE_TIMEOUT_SECONDS,
    }


def deployment(
    owner: Owner,
    revision: str,
    template: api.RevisionTemplate,
    replicas: int,
    progress_deadline_seconds: int = 600,
    placement: devices.Placement = "device",
) -> Manifest:
    """A revision's Deployment; `placement` says whether an accelerator revision runs on the
    device nodes or (spec.accelerator.fallback: cpu) on CPU nodes."""
    labels = revision_selector(owner, revision)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": template.image,
        "ports": [{"name": PORT_NAME, "containerPort": template.port, "protocol": "TCP"}],
        "env": _env(owner, template),
        "resources": _resources(template, placement),
        # Loading a model can take a while: the startup probe holds liveness off for up to 5 minutes.
        # It asks every second, and readiness every 2 s, so a pod that is up gets traffic within a
        # second or two, not a probe period of 5-10 s later (a rollout waits on it at every step).
        "startupProbe": _probe(LIVENESS_PATH, period=1, failures=300),
        "livenessProbe": _probe(LIVENESS_PATH, period=10, failures=3),
        "readinessProbe": _probe(READINESS_PATH, period=2, failures=3),
        # A deleted pod keeps serving this long before its SIGTERM: until the gateway has dropped
        # it from the EndpointSlices, requests still arrive, and a server that stopped at once
        # refused them (a 502 each, seen after promotions under load).
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # the model server never talks to the API server
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}],  # writable scratch under a read-only root
    }
    sources.mount(pod_spec, container, template, container["securityContext"])
    template_meta: dict[str, Any] = {"labels": {**MANAGED_BY, **labels}}
    if template.accelerator is not None:
        template_meta["annotations"] = {devices.PLACEMENT_ANNOTATION: placement}
        if placement == "device":
            _place_on_device(pod_spec, container, template.accelerator)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, revision, labels),
        "spec": {
            "replicas": replicas,
            "progressDeadlineSeconds": progress_deadline_seconds,
            "selector": {"matchLabels": labels},
            # spec.template last: it merges into everything modelship rendered (core/overlay.py).
            "template": overlay.apply({"metadata": template_meta, "spec": pod_spec}, template.template),
        },
    }


def _place_on_device(
    pod_spec: dict[str, Any], container: dict[str, Any], accelerator: api.Accelerator
) -> None:
    """Required node affinity to the device nodes, their taint tolerated, and (opt-in) the host device."""
    terms = [
        {"matchExpressions": [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(term.items())]}
        for term in devices.node_terms(accelerator)
    ]
    pod_spec["affinity"] = {
        "nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    }
    tolerations = devices.tolerations(accelerator)
    if tolerations:
        pod_spec["tolerations"] = tolerations
    if accelerator.host_path:
        path = api.HOST_DEVICE_PATHS[accelerator.interface]
        kind = "Directory" if accelerator.interface == "usb" else "CharDevice"
        pod_spec["volumes"].append({"name": "edgetpu", "hostPath": {"path": path, "type": kind}})
        container["volumeMounts"].append({"name": "edgetpu", "mountPath": path})
        # Without a device plugin nothing adds the device to the container's device cgroup, so
        # opening it fails unless the container is privileged; that is the least that works.
        # It still runs as non-root with a read-only root filesystem. Privileged containers may
        # escalate, and the API server refuses allowPrivilegeEscalation: false with privileged.
        container["securityContext"] = {
            "privileged": True,
            "allowPrivilegeEscalation": True,
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
        }


def service(owner: Owner, name: str, selector: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(owner, name, {MODEL_LABEL: owner.name}),
        "spec": {
            "type": "ClusterIP",
            "selector": selector,
            "ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
