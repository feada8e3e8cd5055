"""Istio's CRDs for the local cluster: `kubernetes/customresourcedefinitions.gen.yaml` of the
`istio.io/api` Go module, fetched through the Go module proxy and cached outside the repository,
keyed by ISTIO_API_VERSION in versions.env (apart from build.py's cache, so a new Istio pin does not
rebuild the control plane):

    <cache root>/istio-api-<version>-<hash>/customresourcedefinitions.gen.yaml

Only the API server's side of Istio exists here (the CRDs, so a VirtualService is stored and its
schema enforced); no istiod or Envoy runs, so nothing routes by it.

Usage: python hack/devcluster/istio.py [--print-dir]
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path
from typing import Any, Protocol

if __package__ in (None, ""):  # run as a script: make the `devcluster` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devcluster import cache
from devcluster.build import _module, load_versions
from devcluster.cache import MANIFEST, build_once, cache_root

MODULE = "istio.io/api"
CRDS = "kubernetes/customresourcedefinitions.gen.yaml"
# Bump when what is cached changes for the same version.
RECIPE = "1"


class Kubectl(Protocol):
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str: ...


def cache_dir(versions: dict[str, str] | None = None) -> Path:
    version = (versions or load_versions())["ISTIO_API_VERSION"]
    digest = hashlib.sha256(json.dumps([version, RECIPE]).encode()).hexdigest()[:10]
    return cache_root() / f"istio-api-{version}-{digest}"


def _built(out: Path) -> bool:
    return (out / MANIFEST).is_file() and (out / Path(CRDS).name).is_file()


def crds() -> Path:
    """The CRD bundle, fetched first unless cached."""
    versions = load_versions()
    version = versions["ISTIO_API_VERSION"]

    def make(tmp: Path) -> dict[str, Any]:
        source = Path(_module(f"{MODULE}@{version}")["Dir"]) / CRDS
        shutil.copyfile(source, tmp / source.name)
        return {"versions": {"ISTIO_API_VERSION": version}, "recipe": RECIPE}

    return build_once(cache_dir(versions), _built, make, "Istio's CRDs") / Path(CRDS).name


def install(cluster: Kubectl) -> None:
    """Install (or update) Istio's CRDs into a cluster and wait until the API server serves them."""
    bundle = str(crds())
    cluster.kubectl("apply", "--server-side", "--field-manager=modelship-devcluster", "-f", bundle)
    cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "-l", "chart=istio")


def main(argv: list[str] | None = None) -> int:
    return cache.main(__doc__, cache_dir, lambda: crds().parent, argv)


if __name__ == "__main__":
    sys.exit(main())
