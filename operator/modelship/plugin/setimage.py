"""`set image NAME IMAGE@sha256:... --model-sha256 HEX`: start a rollout from the command line.

Both fields change together: the serving image verifies the model's checksum when it starts, so an
image without its model's checksum would only roll out pods that refuse to become ready. The values
are checked here with the API's own rules (the messages name spec.image and spec.model.sha256), and
the YAML change is printed, because under GitOps that change belongs in Git.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from modelship import api
from modelship.kube.storage import Storage, md_path
from modelship.plugin.verbs import FIELD_MANAGER, get

_IMAGE: TypeAdapter[str] = TypeAdapter(api.Image)
_SHA256: TypeAdapter[str] = TypeAdapter(api.Sha256)


class BadValue(ValueError):
    """IMAGE or --model-sha256 is not what the API accepts (the message names the field)."""


def _checked(adapter: TypeAdapter[str], value: str, flag: str) -> str:
    try:
        return adapter.validate_python(value)
    except ValidationError as err:
        raise BadValue(f"{flag}: {err.errors()[0]['msg'].removeprefix('Value error, ')}: {value!r}") from None


def patch(image: str, model_sha256: str | None) -> dict[str, Any]:
    """The merge patch of the ModelDeployment; BadValue names the field that is wrong or missing."""
    image = _checked(_IMAGE, image, "IMAGE")
    if not model_sha256:
        raise BadValue(
            "--model-sha256 is required: spec.model.sha256 must be the checksum of the model this image "
            "serves (64 hex digits); the server verifies it when it starts"
        )
    return {"spec": {"image": image, "model": {"sha256": _checked(_SHA256, model_sha256, "--model-sha256")}}}


def gitops_change(name: str, body: dict[str, Any]) -> str:
    """The same change as YAML, to make in Git under GitOps."""
    doc = {"apiVersion": f"{api.GROUP}/{api.VERSION}", "kind": api.KIND, "metadata": {"name": name}, **body}
    return (
        "# Under GitOps (Argo CD, Flux), make this change in the manifest in Git instead:\n"
        + yaml.safe_dump(doc, sort_keys=False)
    )


def set_image(
    kube: Storage,
    namespace: str,
    name: str,
    image: str,
    model_sha256: str | None,
    dry_run: bool,
    out: Callable[[str], None] = print,
) -> None:
    body = patch(image, model_sha256)
    get(kube, namespace, name)  # not found: say so before printing a change for nothing
    if not dry_run:
        kube.merge(md_path(namespace, name), body, FIELD_MANAGER)
        out(f"modeldeployment.{api.GROUP}/{name} image updated")
    out(gitops_change(name, body).rstrip("\n"))
