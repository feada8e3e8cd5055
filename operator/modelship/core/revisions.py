"""Revisions: what defines one, and its name.

A revision is everything in the spec that ends up inside the pods (image, model,
port, resources, env, accelerator, the pod overlay `template`). Replicas, strategy
and traffic are not part of it: changing them never creates a new revision. The name is the ModelDeployment's
name plus the first 10 hex digits of a sha256 over the canonical JSON of the
template; unset optionals are left out, so adding an optional field to the API
later does not rename existing revisions.
"""

from __future__ import annotations

import hashlib
import json

from modelship import api

HASH_LENGTH = 10


def template_of(spec: api.ModelDeploymentSpec) -> api.RevisionTemplate:
    return api.RevisionTemplate(
        image=spec.image,
        # `source: {image: {}}` is the default spelled out: the same pods, so the same revision.
        model=(
            spec.model.model_copy(update={"source": None})
            if spec.model.source is not None and spec.model.source.kind == "image"
            else spec.model
        ),
        port=spec.port,
        resources=spec.resources,
        env=spec.env,
        template=spec.template,
        # How a rollout treats devices is not part of the pods: changing it makes no new revision.
        accelerator=(
            spec.accelerator.model_copy(update={"rollout": None, "min_available": None})
            if spec.accelerator
            else None
        ),
    )


def revision_hash(template: api.RevisionTemplate) -> str:
    canonical = json.dumps(api.dump(template), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def revision_name(model_deployment: str, template: api.RevisionTemplate) -> str:
    return f"{model_deployment}-{revision_hash(template)}"
