"""Image benchmark: size, layers, a cold build, a rebuild after a code-only change, and (for the
model server) the cold start from `podman run` to the first 200 from /readyz.

    make bench-images   # -> bench/results/images.json

Builds copies of the build contexts under throwaway tags, so the images `make images` cached stay
as they are. The cold build uses --no-cache over the local Debian base (made once by `make
images`): every dependency is downloaded and installed again.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from imagebuild.base import ensure_base
from imagebuild.build import (
    OPERATOR,
    REPO,
    SERVING,
    ImageSpec,
    build_args,
    git_revision,
    inspect,
    layers,
    podman_build,
)
from imagebuild.context import copy_context
from imagebuild.podman import podman

CODE_FILE = {SERVING.name: "modelserver/__init__.py", OPERATOR.name: "operator/modelship/__init__.py"}
STARTS = 3


def cold_start(ref: str, bundle_dir: Path, sha256: str, port: int) -> float:
    """Seconds from `podman run` to the first 200 from /readyz; the container is removed after."""
    import urllib.error
    import urllib.request

    name = f"modelship-bench-{os.getpid()}-{port}"
    start = time.monotonic()
    podman(
        "run", "-d", "--pull=never", "--name", name, "--network=host", "--read-only",
        "-v", f"{bundle_dir}:/models:ro", "-e", f"MODEL_SHA256={sha256}",
        "-e", "HOST=127.0.0.1", "-e", f"PORT={port}", ref,
    )  # fmt: skip
    try:
        while time.monotonic() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - start
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError(f"{ref} not ready in 120s:\n{podman('logs', name, check=False).stderr}")
    finally:
        podman("rm", "-f", "-t", "0", name, check=False)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def measure(spec: ImageSpec, work: Path, bundle: tuple[Path, str] | None) -> dict[str, Any]:
    context = copy_context(REPO / spec.context, REPO / spec.ignorefile, work / spec.name)
    args = {**build_args(spec, ensure_base(log=False), git_revision()), "BUILD_TIME": "2026-01-01T00:00:00Z"}
    repo = f"localhost/{spec.name}-bench"
    try:
        cold = podman_build(spec, context, args, [f"{repo}:cold"], no_cache=True)
        # The same context again (all cached): what the code-only rebuild is compared with.
        podman_build(spec, context, args, [f"{repo}:before"])
        with (context / CODE_FILE[spec.name]).open("a") as f:
            f.write("\n# a code-only change\n")
        rebuild = podman_build(spec, context, args, [f"{repo}:code-change"])
        before, after = layers(f"{repo}:before"), layers(f"{repo}:code-change")
        result: dict[str, Any] = {
            "size_mb": round(int(str(inspect(f"{repo}:code-change")["Size"])) / 1e6, 1),
            "layers": len(after),
            "cold_build_seconds": round(cold, 1),
            "code_change_rebuild_seconds": round(rebuild, 1),
            "rebuild_share_of_cold": round(rebuild / cold, 3),
            "layers_reused_after_code_change": sum(a == b for a, b in zip(before, after, strict=True)),
        }
        if bundle:
            starts = [
                cold_start(f"{repo}:code-change", bundle[0], bundle[1], free_port()) for _ in range(STARTS)
            ]
            result["cold_start_seconds"] = {
                "median": round(statistics.median(starts), 2),
                "runs": [round(s, 2) for s in starts],
            }
        else:
            result["cold_start_seconds"] = None
            result["cold_start_note"] = "the operator has no /readyz without a cluster to watch"
        return result
    finally:
        podman("rmi", "-f", f"{repo}:cold", f"{repo}:before", f"{repo}:code-change", check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/images.json")
    args = parser.parse_args(argv)
    from modelserver import sample_models

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        bundle = sample_models.sklearn_bundle(work / "model")
        results = {
            SERVING.name: measure(SERVING, work, (bundle.model_path.parent, bundle.sha256)),
            OPERATOR.name: measure(OPERATOR, work, None),
        }
    podman_version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    doc = {
        "what": "podman builds on the local Debian bookworm base (hack/imagebuild); sizes uncompressed",
        "machine": {"cores": os.cpu_count(), "podman": podman_version, "python": sys.version.split()[0]},
        "revision": git_revision(),
        "images": results,
    }
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
