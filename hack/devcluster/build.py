"""Build the local control plane's binaries from the Go module proxy, and cache them.

Everything comes from `versions.env`. The output lands in a directory outside the
repository keyed by those versions (and by RECIPE, bumped when the recipe changes),
so a second run finds it and returns in well under a second:

    <cache>/bin/        etcd kube-apiserver kube-controller-manager kube-scheduler
                        kubectl kwok helm kubeconform
    <cache>/kwok-stages/    the KWOK stage files (v0.8 ships no built-in stages)
    <cache>/gateway-api/    the Gateway API standard-channel CRDs
    <cache>/prometheus-operator/  the ServiceMonitor and PodMonitor CRDs

Usage: python hack/devcluster/build.py [--print-dir]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the `devcluster` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devcluster import cache
from devcluster.cache import MANIFEST, build_once, cache_root

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
# Bump when the build recipe changes in a way that changes the output.
RECIPE = "3"

# kubelet and kube-proxy run the one real node (realnode.py); same build, so they share packages.
KUBE_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kubelet",
    "kube-proxy",
)
BINARIES = (*KUBE_COMMANDS, "etcd", "kwok", "helm", "kubeconform")

# Stage files passed to `kwok --config`: nodes become Ready and keep a lease; pods
# get an IP and are initialized, become Ready, complete, and go away when deleted.
KWOK_STAGES = (
    "kustomize/stage/node/fast/node-initialize.yaml",
    "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    *(
        f"kustomize/stage/pod/general/pod-{stage}.yaml"
        for stage in (
            "create",
            "init-container-running",
            "init-container-completed",
            "ready",
            "complete",
            "delete",
        )
    ),
)


def load_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


# The pins this build uses; others in versions.env (Traefik's) have caches of their own.
BUILD_KEYS = (
    "KUBERNETES_VERSION",
    "ETCD_VERSION",
    "KWOK_VERSION",
    "HELM_VERSION",
    "KUBECONFORM_VERSION",
    "GATEWAY_API_VERSION",
    "PROMETHEUS_OPERATOR_VERSION",
)


def cache_dir(versions: dict[str, str] | None = None) -> Path:
    versions = versions or load_versions()
    pins = {k: versions[k] for k in BUILD_KEYS}
    key = "-".join(
        [
            "k8s" + versions["KUBERNETES_VERSION"],
            "etcd" + versions["ETCD_VERSION"],
            hashlib.sha256(json.dumps([pins, RECIPE], sort_keys=True).encode()).hexdigest()[:10],
        ]
    )
    return cache_root() / key


def is_built(out: Path) -> bool:
    return (out / MANIFEST).is_file() and all((out / "bin" / b).is_file() for b in BINARIES)


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-buildvcs=false")
    return env


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    print("+", " ".join(cmd), file=sys.stderr, flush=True)
    done = subprocess.run(cmd, cwd=cwd, env=_go_env(), check=True, stdout=subprocess.PIPE, text=True)
    return done.stdout


def _module(path_at_version: str) -> dict[str, str]:
    """Download one module through the proxy; return its `go mod download -json` record."""
    record: dict[str, str] = json.loads(_run(["go", "mod", "download", "-json", path_at_version]))
    if record.get("Error"):
        raise RuntimeError(f"go mod download {path_at_version}: {record['Error']}")
    return record


def staging_replaces(kubernetes_gomod: str, kube_version: str) -> list[tuple[str, str]]:
    """The `k8s.io/<staging> => ./staging/...` replaces of k8s.io/kubernetes's go.mod,
    mapped to the published `v0.<minor>.<patch>` of each staging module."""
    published = "v0." + kube_version.removeprefix("v").split(".", 1)[1]
    names = re.findall(r"^\s*(?:replace\s+)?(k8s\.io/\S+)\s+=>\s+\./staging/", kubernetes_gomod, re.M)
    return [(name, published) for name in sorted(set(names))]


def godebug_lines(gomod: str) -> list[str]:
    """`godebug` directives (single-line or block) of a go.mod, to copy into a wrapper."""
    block = re.search(r"^godebug\s*\((.*?)^\)", gomod, re.M | re.S)
    if block:
        return ["godebug " + ln.strip() for ln in block.group(1).splitlines() if ln.strip()]
    return [ln.strip() for ln in gomod.splitlines() if ln.startswith("godebug ")]


def wrapper_gomod(
    module: str, require: str, version: str, replaces: list[tuple[str, str]], godebug: list[str]
) -> str:
    lines = [f"module {module}", "", "go 1.26.0", "", *godebug, "", f"require {require} {version}", ""]
    lines += [f"replace {name} => {name} {ver}" for name, ver in replaces]
    return "\n".join(lines) + "\n"


def _build_in_wrapper(workdir: Path, gomod: str, packages: list[str], ldflags: str, output: str) -> None:
    """`go build` packages of a dependency inside a generated wrapper module.

    `output` is a directory ending in "/" (one binary per command) or a file path."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "go.mod").write_text(gomod)
    _run(["go", "mod", "download"], cwd=workdir)
    # One `go build` for all commands of the module, so they share compiled packages.
    _run(
        ["go", "build", "-mod=mod", "-trimpath", "-ldflags", ldflags, "-o", output, *packages],
        cwd=workdir,
    )


def build_kubernetes(versions: dict[str, str], work: Path, bindir: Path) -> None:
    v = versions["KUBERNETES_VERSION"]
    gomod = Path(_module(f"k8s.io/kubernetes@{v}")["GoMod"]).read_text()
    major, minor = v.removeprefix("v").split(".")[:2]
    pkg = "k8s.io/component-base/version"
    # Without these the binaries report v0.0.0-master, and version parsers misbehave.
    ldflags = " ".join(
        [
            "-s -w",
            f"-X {pkg}.gitVersion={v}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate=1970-01-01T00:00:00Z",
        ]
    )
    _build_in_wrapper(
        work / "kubernetes",
        wrapper_gomod(
            "modelship.local/devcluster/kubernetes",
            "k8s.io/kubernetes",
            v,
            staging_replaces(gomod, v),
            godebug_lines(gomod),
        ),
        [f"k8s.io/kubernetes/cmd/{c}" for c in KUBE_COMMANDS],
        ldflags,
        f"{bindir}/",
    )


def build_etcd(versions: dict[str, str], work: Path, bindir: Path) -> None:
    v = versions["ETCD_VERSION"]
    gomod = Path(_module(f"go.etcd.io/etcd/server/v3@{v}")["GoMod"]).read_text()
    # The server module replaces its sibling modules with ../ paths; use their published versions.
    siblings = re.findall(r"^\s*(?:replace\s+)?(go\.etcd\.io/etcd/\S+)\s+=>\s+\.\./", gomod, re.M)
    _build_in_wrapper(
        work / "etcd",
        wrapper_gomod(
            "modelship.local/devcluster/etcd",
            "go.etcd.io/etcd/server/v3",
            v,
            [(s, v) for s in sorted(set(siblings))],
            godebug_lines(gomod),
        ),
        ["go.etcd.io/etcd/server/v3"],
        "-s -w",
        str(bindir / "etcd"),
    )


def go_install(package_at_version: str, bindir: Path, ldflags: str = "-s -w") -> None:
    env_bin = ["env", f"GOBIN={bindir}"]
    _run([*env_bin, "go", "install", "-trimpath", "-ldflags", ldflags, package_at_version])


def build_tools(versions: dict[str, str], bindir: Path) -> None:
    kube_major, kube_minor = versions["KUBERNETES_VERSION"].removeprefix("v").split(".")[:2]
    hv = versions["HELM_VERSION"]
    # Helm built without its own ldflags believes the cluster is Kubernetes 1.20.
    helm_ldflags = " ".join(
        ["-s -w", f"-X helm.sh/helm/v3/internal/version.version={hv}"]
        + [
            f"-X helm.sh/helm/v3/pkg/{p}.k8sVersion{part}={val}"
            for p in ("chartutil", "lint/rules")
            for part, val in (("Major", kube_major), ("Minor", kube_minor))
        ]
    )
    go_install(f"helm.sh/helm/v3/cmd/helm@{hv}", bindir, helm_ldflags)
    go_install(f"sigs.k8s.io/kwok/cmd/kwok@{versions['KWOK_VERSION']}", bindir)
    go_install(f"github.com/yannh/kubeconform/cmd/kubeconform@{versions['KUBECONFORM_VERSION']}", bindir)


def copy_module_files(versions: dict[str, str], out: Path) -> None:
    kwok_dir = Path(_module(f"sigs.k8s.io/kwok@{versions['KWOK_VERSION']}")["Dir"])
    stages = out / "kwok-stages"
    stages.mkdir(parents=True, exist_ok=True)
    for rel in KWOK_STAGES:
        shutil.copyfile(kwok_dir / rel, stages / Path(rel).name)
    gw_dir = Path(_module(f"sigs.k8s.io/gateway-api@{versions['GATEWAY_API_VERSION']}")["Dir"])
    crds = out / "gateway-api"
    crds.mkdir(parents=True, exist_ok=True)
    for f in sorted((gw_dir / "config/crd/standard").glob("*.yaml")):
        shutil.copyfile(f, crds / f.name)
    # ServiceMonitor/PodMonitor CRDs, so the Helm chart's optional monitors can be
    # validated by the real API server (server-side dry-run) like everything else.
    po = f"github.com/prometheus-operator/prometheus-operator@{versions['PROMETHEUS_OPERATOR_VERSION']}"
    po_dir = Path(_module(po)["Dir"]) / "example/prometheus-operator-crd"
    monitors = out / "prometheus-operator"
    monitors.mkdir(parents=True, exist_ok=True)
    for kind in ("servicemonitors", "podmonitors"):
        name = f"monitoring.coreos.com_{kind}.yaml"
        shutil.copyfile(po_dir / name, monitors / name)


def build(out: Path | None = None) -> Path:
    """Build everything into the cache (no-op when already there); return the cache dir."""
    versions = load_versions()

    def make(tmp: Path) -> dict[str, Any]:
        bindir = tmp / "bin"
        bindir.mkdir()
        build_kubernetes(versions, tmp / "work", bindir)
        build_etcd(versions, tmp / "work", bindir)
        build_tools(versions, bindir)
        copy_module_files(versions, tmp)
        shutil.rmtree(tmp / "work")
        return {"versions": versions, "recipe": RECIPE}

    return build_once(out or cache_dir(versions), is_built, make, "the local control plane")


def main(argv: list[str] | None = None) -> int:
    return cache.main(__doc__, cache_dir, build, argv)


if __name__ == "__main__":
    sys.exit(main())
