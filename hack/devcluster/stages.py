"""KWOK's stage files as the local cluster runs them.

KWOK's stock `pod-ready` stage marks every pod Ready a second or so after it is
created: right for pods nothing runs. The local world's pod runner (hack/localworld)
runs real processes for some pods and reports their readiness from the process's
own /readyz; it claims such a pod with RUNNER_ANNOTATION, and the `pod-ready` stage
here skips claimed pods, so KWOK never marks a pod Ready that is not.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

RUNNER_ANNOTATION = "devcluster.modelship.io/pod-runner"
POD_READY = "pod-ready.yaml"


def unclaimed_only(stage: dict[str, Any]) -> dict[str, Any]:
    """The stage with one more selector: the pod carries no RUNNER_ANNOTATION."""
    expressions = stage["spec"]["selector"]["matchExpressions"]
    claim = {"key": f'.metadata.annotations["{RUNNER_ANNOTATION}"]', "operator": "DoesNotExist"}
    return {
        **stage,
        "spec": {
            **stage["spec"],
            "selector": {**stage["spec"]["selector"], "matchExpressions": [*expressions, claim]},
        },
    }


def write_stage_files(source: Path, out: Path) -> list[Path]:
    """Copy the cached stage files into `out` (the cluster's state dir), adjusting pod-ready."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for src in sorted(source.glob("*.yaml")):
        dest = out / src.name
        if src.name == POD_READY:
            dest.write_text(yaml.safe_dump(unclaimed_only(yaml.safe_load(src.read_text())), sort_keys=False))
        else:
            dest.write_bytes(src.read_bytes())
        written.append(dest)
    return written
