"""Model sources (`spec.model.source`): how a revision's pods get their model, and how a wrong
artifact is recognised in what the pods report.

- `image` (or unset): baked into spec.image; the pods are exactly what they were before sources.
- `pvc`: the claim is mounted read-only at /models (optionally a subPath of it).
- `uri`: an init container, the serving image itself running `modelserver fetch`, downloads the
  artifact into an emptyDir at /models and verifies its sha256; the model container mounts it
  read-only. Credentials reach only the init container (envFrom the Secret).
- `oci`: an image volume (`volumes[].image`) holding the artifact, mounted read-only at /models.

Whatever the source, the server verifies the file against MODEL_SHA256 before it reports ready
and exits with CHECKSUM_EXIT_CODE otherwise (serving-image/modelserver/cli.py); so does `fetch`.
Both containers then leave their last log line as the termination message, which
`checksum_failure` turns into the reason a rollout aborts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelship import api

# serving-image/modelserver/cli.py EXIT_CHECKSUM: the server and `modelserver fetch` exit with it
# when the artifact's sha256 is not MODEL_SHA256 (a test keeps the two equal).
CHECKSUM_EXIT_CODE = 3
VOLUME = api.MODEL_VOLUME
FETCH_CONTAINER = api.FETCH_CONTAINER
# The kubelet copies the end of a failed container's log into its status (at most 2048 bytes):
# what the operator reads to name the checksum.
FALLBACK_TO_LOGS = "FallbackToLogsOnError"
_MESSAGE_LIMIT = 400


def mount(
    pod_spec: dict[str, Any],
    container: dict[str, Any],
    template: api.RevisionTemplate,
    security_context: Mapping[str, Any],
) -> None:
    """Add the model volume, its read-only mount and MODEL_PATH (and for `uri` the fetch init
    container) to a rendered pod; nothing for a model baked into the image."""
    source = template.model.source
    model_path = source.model_path if source is not None else None
    if source is None or model_path is None:
        return
    mount: dict[str, Any] = {"name": VOLUME, "mountPath": api.MODEL_DIR, "readOnly": True}
    if source.pvc is not None:
        volume: dict[str, Any] = {
            "name": VOLUME,
            "persistentVolumeClaim": {"claimName": source.pvc.claim_name, "readOnly": True},
        }
        if source.pvc.sub_path:
            mount["subPath"] = source.pvc.sub_path
    elif source.oci is not None:
        volume = {"name": VOLUME, "image": {"reference": source.oci.reference, "pullPolicy": "IfNotPresent"}}
    else:
        volume = {"name": VOLUME, "emptyDir": {}}
        pod_spec.setdefault("initContainers", []).append(
            fetch_container(template, model_path, container.get("resources"), security_context)
        )
    pod_spec["volumes"].append(volume)
    container["volumeMounts"].append(mount)
    container["env"].append({"name": "MODEL_PATH", "value": model_path})
    container["terminationMessagePolicy"] = FALLBACK_TO_LOGS


def fetch_container(
    template: api.RevisionTemplate,
    model_path: str,
    resources: Mapping[str, Any] | None,
    security_context: Mapping[str, Any],
) -> dict[str, Any]:
    """The init container that downloads a `uri` source: the serving image's `modelserver fetch`."""
    uri = template.model.source.uri if template.model.source else None
    assert uri is not None, "fetch_container is for spec.model.source.uri"
    container: dict[str, Any] = {
        "name": FETCH_CONTAINER,
        "image": template.image,
        # The image's entrypoint spelled out, so a different CMD or ENTRYPOINT cannot change it.
        "command": ["python", "-m", "modelserver", "fetch"],
        "args": [uri.url, "--sha256", template.model.sha256, "--dest", model_path],
        # The model container's requests (not an accelerator's devices): a pod is scheduled by
        # the larger of its init and its regular containers, so this asks for nothing more.
        "resources": {k: v for k, v in (resources or {}).items() if k == "requests"},
        "securityContext": dict(security_context),
        "terminationMessagePolicy": FALLBACK_TO_LOGS,
        "volumeMounts": [
            {"name": VOLUME, "mountPath": api.MODEL_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if uri.secret_ref is not None:
        container["envFrom"] = [{"secretRef": {"name": uri.secret_ref.name}}]
    return container


def _checksum_exit(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The container's termination (current or last) with the checksum exit code, if any."""
    for state in ("state", "lastState"):
        terminated = (status.get(state) or {}).get("terminated") or {}
        if terminated.get("exitCode") == CHECKSUM_EXIT_CODE:
            return terminated
    return None


def checksum_failure(pods: Iterable[Mapping[str, Any]], sha256: str, model_container: str) -> str | None:
    """Why a revision's model is refused, from its pods' container statuses: a sentence naming
    spec.model.sha256 and what the container said (the actual checksum, when its log had it),
    or None while neither the model container nor the fetch container failed the checksum."""
    for pod in pods:
        status = pod.get("status") or {}
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for container in statuses:
            if container.get("name") not in (FETCH_CONTAINER, model_container):
                continue
            terminated = _checksum_exit(container)
            if terminated is None:
                continue
            lines = [line.strip() for line in (terminated.get("message") or "").splitlines() if line.strip()]
            said = f": {lines[-1][:_MESSAGE_LIMIT]}" if lines else ""
            name = (pod.get("metadata") or {}).get("name", "?")
            return (
                f"the model artifact does not match spec.model.sha256 {sha256} (pod {name}, container "
                f"{container['name']} exited with code {CHECKSUM_EXIT_CODE}{said})"
            )
    return None
