"""Layer caching, measured: a rebuild after a code-only change reuses the dependency layer.

The timings of the same rebuild are recorded by `make bench-images` (bench/results/images.json),
not asserted here: a busy machine would make a timed assertion flaky.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from imagebuild.base import ensure_base
from imagebuild.build import (
    OPERATOR,
    REPO,
    SERVING,
    ImageSpec,
    build_args,
    git_revision,
    layers,
    podman_build,
)
from imagebuild.context import copy_context
from imagebuild.podman import podman

pytestmark = pytest.mark.images

# The code file each rebuild changes, relative to the build context.
CODE_FILE = {SERVING.name: "modelserver/__init__.py", OPERATOR.name: "operator/modelship/__init__.py"}


@pytest.mark.parametrize("spec", [SERVING, OPERATOR], ids=lambda s: s.name)
def test_code_only_change_reuses_the_dependency_layer(spec: ImageSpec, tmp_path: Path) -> None:
    context = copy_context(REPO / spec.context, REPO / spec.ignorefile, tmp_path / "context")
    args = {**build_args(spec, ensure_base(log=False), git_revision()), "BUILD_TIME": "2026-01-01T00:00:00Z"}
    repo = f"localhost/{spec.name}-cachetest"
    try:
        podman_build(spec, context, args, [f"{repo}:before"])
        with (context / CODE_FILE[spec.name]).open("a") as f:
            f.write("\n# a code-only change\n")
        podman_build(spec, context, args, [f"{repo}:after"])
        before, after = layers(f"{repo}:before"), layers(f"{repo}:after")
    finally:
        podman("rmi", "-f", f"{repo}:before", f"{repo}:after", check=False)
    assert len(before) == len(after)
    # The last layer is the code; everything under it (base, user, the dependencies' venv) is shared.
    assert before[:-1] == after[:-1]
    assert before[-1] != after[-1]
