"""kstatus, the status logic of sigs.k8s.io/cli-utils that Flux's health checks use, as a command.

Why: Flux (a Kustomization's `wait`/`healthChecks`) judges a ModelDeployment by kstatus' rules
(`Reconciling`, `Stalled`, `observedGeneration`), and only the library itself shows what Flux
will say. `hack/kstatus/` is a small Go module around it (its go.sum pins every dependency); it is
built from the Go module proxy like the control plane (build.py) and cached outside the
repository, keyed by the module's files:

    <cache root>/kstatus-<hash>/bin/kstatus

`kstatus < object.json` prints {"status": "Current|InProgress|Failed|...", "message", "conditions"}.

Usage: python hack/devcluster/kstatus.py [--print-dir]
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `devcluster` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devcluster import cache
from devcluster.build import _run
from devcluster.cache import MANIFEST, build_once, cache_root

SOURCE = Path(__file__).resolve().parents[1] / "kstatus"
FILES = ("go.mod", "go.sum", "main.go")
# Bump when the build recipe changes in a way that changes the output.
RECIPE = "1"


def cache_dir(source: Path = SOURCE) -> Path:
    digest = hashlib.sha256(RECIPE.encode())
    for name in FILES:
        digest.update(name.encode() + b"\0" + (source / name).read_bytes())
    return cache_root() / f"kstatus-{digest.hexdigest()[:12]}"


def binary(out: Path) -> Path:
    return out / "bin" / "kstatus"


def is_built(out: Path) -> bool:
    return (out / MANIFEST).is_file() and binary(out).is_file()


def build(out: Path | None = None) -> Path:
    """Build kstatus into the cache (no-op when already there); return the cache dir."""

    def make(tmp: Path) -> dict[str, Any]:
        # -mod=readonly: the committed go.sum is the pin; CGO_ENABLED=0, GOTOOLCHAIN=local come from _run.
        cmd = ["go", "build", "-mod=readonly", "-trimpath", "-ldflags", "-s -w", "-o", str(binary(tmp)), "."]
        _run(cmd, cwd=SOURCE)
        return {"recipe": RECIPE, "go.mod": (SOURCE / "go.mod").read_text()}

    return build_once(out or cache_dir(), is_built, make, "kstatus")


def compute(obj: dict[str, Any], bin: Path | None = None) -> dict[str, Any]:
    """kstatus' verdict on one object (as read from the API server)."""
    done = subprocess.run(
        [str(bin or binary(build()))], input=json.dumps(obj), capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"kstatus failed ({done.returncode}): {done.stderr.strip()}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    return cache.main(__doc__, cache_dir, build, argv)


if __name__ == "__main__":
    sys.exit(main())
