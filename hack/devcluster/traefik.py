"""Traefik v3 as the local cluster's Gateway API data plane.

Why: the operator shifts traffic by writing HTTPRoute backendRef weights, and only a real
router shows that those weights split real requests. Traefik is one static Go binary whose
`kubernetesGateway` provider runs outside a cluster (it reads $KUBECONFIG), so it needs no
pods, images or CNI: it is built from the Go module proxy like the control plane (build.py)
and cached outside the repository, keyed by TRAEFIK_VERSION in versions.env:

    <cache root>/traefik-<version>-<hash>/bin/traefik

Usage: python hack/devcluster/traefik.py [--print-dir]
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import yaml

if __package__ in (None, ""):  # run as a script: make the `devcluster` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devcluster import cache, procs
from devcluster.build import _module, _run, godebug_lines, load_versions
from devcluster.cache import MANIFEST, build_once, cache_root
from devcluster.cluster import wait_for
from devcluster.net import free_port

if TYPE_CHECKING:
    from kubernetes import client

# Bump when the build recipe changes in a way that changes the output.
RECIPE = "1"
MODULE = "github.com/traefik/traefik/v3"
PACKAGE = f"{MODULE}/cmd/traefik"
VERSION_PKG = f"{MODULE}/pkg/version"

CONTROLLER_NAME = "traefik.io/gateway-controller"
GATEWAY_CLASS = "traefik"
GATEWAY_NAME = "modelship"
GATEWAY_GROUP, GATEWAY_VERSION = "gateway.networking.k8s.io", "v1"

# Traefik's go.mod replaces `github.com/traefik/traefik/dynamic/ext => ./pkg/config/dynamic/ext`,
# a nested module (its own go.mod), and the Go module zip leaves nested modules out: the
# directory is not in the module cache, and the module is not on the proxy. It is an extension
# point that is empty in the open-source build; this is its content at v3.7 (upstream
# pkg/config/dynamic/ext/{go.mod,ext.go}), written next to the wrapper when the directory is missing.
NESTED_MODULE_STUBS: dict[str, dict[str, str]] = {
    "github.com/traefik/traefik/dynamic/ext": {
        "go.mod": "module github.com/traefik/traefik/dynamic/ext\n\ngo 1.26.0\n",
        "ext.go": (
            "package ext\n\n"
            "// HTTP is a dynamic.HTTP extension.\ntype HTTP struct{}\n\n"
            "// Router is a dynamic.Router extension.\ntype Router struct{}\n"
        ),
    },
}


# --- build -----------------------------------------------------------------------------------


def traefik_version(versions: Mapping[str, str] | None = None) -> str:
    return (versions or load_versions())["TRAEFIK_VERSION"]


def cache_dir(version: str) -> Path:
    digest = hashlib.sha256(json.dumps([version, RECIPE]).encode()).hexdigest()[:10]
    return cache_root() / f"traefik-{version}-{digest}"


def binary(out: Path) -> Path:
    return out / "bin" / "traefik"


def is_built(out: Path) -> bool:
    return (out / MANIFEST).is_file() and binary(out).is_file()


def directives(gomod: str, verb: str) -> list[str]:
    """The bodies of one go.mod directive (`replace`, `exclude`...), single-line or block."""
    found: list[str] = []
    in_block = False
    for raw in gomod.splitlines():
        line = raw.split("//", 1)[0].strip()
        if in_block:
            if line == ")":
                in_block = False
            elif line:
                found.append(line)
        elif re.fullmatch(rf"{verb}\s*\(", line):
            in_block = True
        elif line.startswith(verb + " "):
            found.append(line[len(verb) :].strip())
    return found


def is_local_path(target: str) -> bool:
    return target.startswith(("./", "../", "/")) or target in (".", "..")


def split_replace(body: str) -> tuple[str, str, str]:
    """`old [v] => new [v]` as (old module path, old side, new side)."""
    left, sep, right = (s.strip() for s in body.partition("=>"))
    if not sep or not left or not right:
        raise ValueError(f"malformed replace directive: {body!r}")
    return left.split()[0], left, right


def replaces(gomod: str, module_dir: Path, overrides: Mapping[str, str] | None = None) -> list[str]:
    """Traefik's replace directives, for the wrapper module.

    A replace only takes effect in the main module, so the wrapper must carry them. A
    relative-path target is resolved against `module_dir` (Traefik's directory in the module
    cache). `overrides` maps a module path to the new side of its replace (a directory, or
    "module version"); module paths Traefik does not replace are appended."""
    overrides = dict(overrides or {})
    out: list[str] = []
    for body in directives(gomod, "replace"):
        name, left, right = split_replace(body)
        if name in overrides:
            right = overrides.pop(name)
        elif is_local_path(right):
            right = os.path.normpath(module_dir / right)
        out.append(f"{left} => {right}")
    out += [f"{name} => {right}" for name, right in overrides.items()]
    return out


def wrapper_gomod(
    gomod: str, version: str, module_dir: Path, overrides: Mapping[str, str] | None = None
) -> str:
    """go.mod of a module that only requires Traefik at `version`, with its replaces,
    excludes and godebug settings (which otherwise apply only when Traefik is the main module)."""
    go_line = re.search(r"^go\s+(\S+)", gomod, re.M)
    lines = [
        "module modelship.local/devcluster/traefik",
        "",
        f"go {go_line.group(1) if go_line else '1.26.0'}",
        "",
        *godebug_lines(gomod),
        "",
        f"require {MODULE} {version}",
        "",
        *(f"replace {r}" for r in replaces(gomod, module_dir, overrides)),
        *(f"exclude {e}" for e in directives(gomod, "exclude")),
    ]
    return "\n".join(lines) + "\n"


def missing_local_replaces(gomod: str, module_dir: Path) -> list[str]:
    """Module paths whose relative-path replace target has no go.mod in `module_dir`
    (nested modules are left out of module zips)."""
    missing = []
    for body in directives(gomod, "replace"):
        name, _, right = split_replace(body)
        if is_local_path(right) and not (module_dir / right / "go.mod").is_file():
            missing.append(name)
    return missing


def module_replaces(gomod: str) -> dict[str, str]:
    """Module path -> "module version" of Traefik's replaces that point at another module."""
    found = {}
    for body in directives(gomod, "replace"):
        name, _, right = split_replace(body)
        if not is_local_path(right):
            found[name] = right
    return found


# Dropped from this build when the proxy cannot serve what they import; see `dropped_dns_providers`.
LEGO_DNS = re.compile(r"^(github\.com/go-acme/lego(?:/v\d+)?)/providers/dns/([a-z0-9]+)$")
LEGO_DNS_FACTORY = "providers/dns/zz_gen_dns_providers.go"


def go_list_packages(stream: str) -> list[dict[str, Any]]:
    """Parse `go list -json` output (a stream of JSON objects)."""
    decoder, pos, out = json.JSONDecoder(), 0, []
    while pos < len(stream):
        if stream[pos].isspace():
            pos += 1
            continue
        obj, pos = decoder.raw_decode(stream, pos)
        out.append(obj)
    return out


def broken_packages(packages: list[dict[str, Any]]) -> list[str]:
    return sorted(p["ImportPath"] for p in packages if p.get("Error"))


def dropped_dns_providers(packages: list[dict[str, Any]]) -> tuple[str | None, list[str]]:
    """Traefik imports every ACME DNS provider of lego (through its factory); some import cloud
    SDKs the module proxy here does not serve. Returns lego's module path and the providers
    that fail to load (their package or a dependency has an error)."""
    lego, dropped = None, []
    for p in packages:
        m = LEGO_DNS.match(p["ImportPath"])
        if m and (p.get("Error") or p.get("DepsErrors")):
            lego = m.group(1)
            dropped.append(m.group(2))
    return lego, sorted(dropped)


def patch_dns_factory(source: str, lego: str, providers: list[str]) -> str:
    """lego's generated DNS provider factory without `providers`: their imports go, and asking
    for one by name returns an error instead."""
    for name in providers:
        source, n_import = re.subn(rf'^\s*"{re.escape(lego)}/providers/dns/{name}"\n', "", source, flags=re.M)
        source, n_call = re.subn(
            rf"return {name}\.NewDNSProvider\(\)",
            'return nil, fmt.Errorf("DNS provider %s: not in this build (its SDK was not on the Go '
            'module proxy)", name)',
            source,
        )
        if n_import != 1 or n_call != 1:
            raise RuntimeError(f"cannot drop DNS provider {name!r} from lego's factory: its layout changed")
    return source


# Replace targets of Traefik's go.mod the proxy here may not serve, and what to use instead.
# v3.7 pins its fork of go-http-auth at b975dcaa8c48 (Traefik PR #13636); that version is
# not on this proxy, the one v3.6 pins is. It only backs the BasicAuth/DigestAuth middlewares.
FALLBACK_REPLACES = {
    "github.com/abbot/go-http-auth": (
        "github.com/containous/go-http-auth v0.4.1-0.20200324110947-a37a7636d23e"
    ),
}


def _available(module_version: str) -> bool:
    try:
        _module(module_version.replace(" ", "@"))
    except (RuntimeError, subprocess.CalledProcessError):
        return False
    return True


def ldflags(version: str) -> str:
    # Without -X the binary reports "dev" (`traefik version`, the dashboard, the version check).
    return " ".join(
        [
            "-s -w",
            f"-X {VERSION_PKG}.Version={version}",
            f"-X {VERSION_PKG}.BuildDate=1970-01-01T00:00:00Z",
        ]
    )


def _prepare(version: str, work: Path) -> dict[str, Any]:
    """Write the wrapper module into `work`, working around what the proxy cannot serve.
    Returns what was changed from upstream's build, for the manifest."""
    record = _module(f"{MODULE}@{version}")
    gomod = Path(record["GoMod"]).read_text()
    module_dir = Path(record["Dir"])
    overrides: dict[str, str] = {}
    for name in missing_local_replaces(gomod, module_dir):
        if name not in NESTED_MODULE_STUBS:
            raise RuntimeError(
                f"{MODULE}@{version} replaces {name} with a directory missing from its module "
                "(a nested module): add its content to NESTED_MODULE_STUBS"
            )
        stub = work / "stubs" / name
        stub.mkdir(parents=True)
        for fname, text in NESTED_MODULE_STUBS[name].items():
            (stub / fname).write_text(text)
        overrides[name] = str(stub)
    for name, target in module_replaces(gomod).items():
        if not _available(target) and name in FALLBACK_REPLACES:
            print(f"{target} is not on the proxy: using {FALLBACK_REPLACES[name]}", file=sys.stderr)
            overrides[name] = FALLBACK_REPLACES[name]
    (work / "go.mod").write_text(wrapper_gomod(gomod, version, module_dir, overrides))
    _run(["go", "mod", "download"], cwd=work)

    listing = _run(
        ["go", "list", "-mod=mod", "-e", "-deps", "-json=ImportPath,Error,DepsErrors", PACKAGE], cwd=work
    )
    packages = go_list_packages(listing)
    lego, dropped = dropped_dns_providers(packages)
    if lego and dropped:
        print(f"lego DNS providers left out (SDK not on the proxy): {', '.join(dropped)}", file=sys.stderr)
        lego_record = json.loads(_run(["go", "list", "-mod=mod", "-m", "-json", lego], cwd=work))
        patched = work / "patched" / lego
        shutil.copytree(lego_record["Dir"], patched)
        for d in [patched, *(p for p in patched.rglob("*") if p.is_dir())]:
            d.chmod(0o755)  # the module cache is read-only
        factory = patched / LEGO_DNS_FACTORY
        text = patch_dns_factory(factory.read_text(), lego, dropped)
        factory.unlink()
        factory.write_text(text)
        overrides[lego] = str(patched)
        (work / "go.mod").write_text(wrapper_gomod(gomod, version, module_dir, overrides))
    return {"replaced": overrides, "dropped_dns_providers": dropped}


def build(out: Path | None = None) -> Path:
    """Build traefik into the cache (no-op when already there); return the cache dir."""
    version = traefik_version()

    def make(tmp: Path) -> dict[str, Any]:
        work = tmp / "work"
        work.mkdir()
        changes = _prepare(version, work)
        (tmp / "bin").mkdir()
        # One `go build` of the one command; CGO_ENABLED=0 and GOTOOLCHAIN=local come from _run.
        cmd = ["go", "build", "-mod=mod", "-trimpath", "-ldflags", ldflags(version)]
        _run([*cmd, "-o", str(binary(tmp)), PACKAGE], cwd=work)
        gomod = (work / "go.mod").read_text()
        shutil.rmtree(work)
        # Paths in the scratch dir, which is gone once the build is done.
        recorded = json.loads(json.dumps(changes).replace(str(work), "<build dir>"))
        return {"version": version, "recipe": RECIPE, "go.mod": gomod, **recorded}

    return build_once(out or cache_dir(version), is_built, make, "Traefik")


# --- configuration ---------------------------------------------------------------------------

WEB, WEB_EXTRA, PING = "web", "web-extra", "traefik"


def static_config(
    port: int,
    ping_port: int,
    log_file: Path,
    extra: tuple[str, int] | None = None,
    status_ip: str = "127.0.0.1",
    access_log: Path | None = None,
) -> dict[str, Any]:
    """Traefik's static configuration (its YAML config file) for running outside the cluster.

    The Gateway provider finds its API server through $KUBECONFIG (set by `Traefik.start`), not
    through this file. `extra` is a second (address, port) to accept traffic on, for pods that
    reach the host on a bridge address: it must be a different *port*, because Traefik maps a
    Gateway listener to the first entry point whose address ends in ":<listener port>".
    `access_log`: where Traefik writes one JSON line per request it answered with a 5xx (which
    router and service, which backend, and whether the status was Traefik's own), to tell a
    gateway's error from a model's."""
    entry_points: dict[str, Any] = {
        WEB: {"address": f"127.0.0.1:{port}"},
        PING: {"address": f"127.0.0.1:{ping_port}"},
    }
    if extra is not None:
        host, extra_port = extra
        if extra_port in (port, ping_port):
            raise ValueError(f"the extra entry point needs a port of its own, not {extra_port}")
        entry_points[WEB_EXTRA] = {"address": f"{host}:{extra_port}"}
    return {
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
        "entryPoints": entry_points,
        "ping": {"entryPoint": PING},
        "providers": {
            # Apply route changes quickly (the default waits 2s between reloads).
            "providersThrottleDuration": "100ms",
            "kubernetesGateway": {"statusAddress": {"ip": status_ip}},
        },
        "log": {"level": "INFO", "filePath": str(log_file), "noColor": True},
        **({"accessLog": _error_log(access_log)} if access_log is not None else {}),
        # No `api`, `metrics` or `tracing` section: all off.
    }


def _error_log(path: Path) -> dict[str, Any]:
    return {"filePath": str(path), "format": "json", "filters": {"statusCodes": ["500-599"]}}


def gateway_class(name: str = GATEWAY_CLASS) -> dict[str, Any]:
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": CONTROLLER_NAME},
    }


def gateway(
    namespace: str,
    port: int,
    extra_port: int | None = None,
    name: str = GATEWAY_NAME,
    class_name: str = GATEWAY_CLASS,
) -> dict[str, Any]:
    """A Gateway with one HTTP listener per Traefik entry point; the listener port must equal
    the entry point's port (that is how Traefik ties them together)."""

    def listener(lname: str, lport: int) -> dict[str, Any]:
        return {
            "name": lname,
            "protocol": "HTTP",
            "port": lport,
            "allowedRoutes": {"namespaces": {"from": "All"}},
        }

    listeners = [listener(WEB, port)]
    if extra_port is not None:
        listeners.append(listener(WEB_EXTRA, extra_port))
    return {
        "apiVersion": f"{GATEWAY_GROUP}/{GATEWAY_VERSION}",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"gatewayClassName": class_name, "listeners": listeners},
    }


def condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    """Whether status.conditions has `kind` True for the object's current generation."""
    generation = obj.get("metadata", {}).get("generation")
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == kind:
            current = generation is None or cond.get("observedGeneration") == generation
            return bool(cond.get("status") == "True" and current)
    return False


# --- the process -----------------------------------------------------------------------------

# Straight to the local process, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Traefik:
    """One Traefik process on this machine, reading Gateway API objects from a cluster."""

    port: int = field(default_factory=free_port)
    ping_port: int = field(default_factory=free_port)
    # (address, port) also served, e.g. for pods on a bridge; see `static_config`.
    extra: tuple[str, int] | None = None
    child: procs.Child | None = field(default=None, init=False)
    state_dir: Path | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        while self.ping_port == self.port:
            self.ping_port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ping_url(self) -> str:
        return f"http://127.0.0.1:{self.ping_port}/ping"

    @property
    def log_file(self) -> Path:
        if self.state_dir is None:
            raise RuntimeError("Traefik has not been started")
        return self.state_dir / "traefik.log"

    @property
    def error_log(self) -> Path:
        """The access log of the requests Traefik answered with a 5xx (see `static_config`)."""
        if self.state_dir is None:
            raise RuntimeError("Traefik has not been started")
        return self.state_dir / "errors.jsonl"

    def _pinged(self) -> bool:
        if self.child is not None and not self.child.running:
            raise RuntimeError(f"traefik exited with {self.child.returncode}; see {self.log_file}")
        try:
            with _DIRECT.open(self.ping_url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def start(self, kubeconfig: Path, bin: Path, state_dir: Path, timeout: float = 30) -> None:
        """Start traefik (`bin`) against the cluster of `kubeconfig`; return once it answers its ping."""
        state_dir.mkdir(parents=True, exist_ok=True)
        self.state_dir = state_dir
        config_file = state_dir / "traefik.yml"
        config = static_config(
            self.port, self.ping_port, self.log_file, self.extra, access_log=self.error_log
        )
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
        # Traefik uses in-cluster config when KUBERNETES_SERVICE_HOST/PORT are set, else $KUBECONFIG.
        env["KUBECONFIG"] = str(kubeconfig)
        self.child = procs.Child(
            "traefik", [str(bin), f"--configFile={config_file}"], state_dir / "traefik.out", state_dir, env
        )
        self.start_process(timeout)

    def start_process(self, timeout: float = 30) -> None:
        """Start the process (again, after stop_process) with the same config and ports; return
        once it answers its ping."""
        if self.child is None:
            raise RuntimeError("Traefik has not been started")
        self.child.start()
        try:
            wait_for("traefik's ping", self._pinged, timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def stop_process(self, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its pid (`sig`, then SIGKILL after `timeout` s); start_process
        starts it again."""
        if self.child is not None:
            self.child.stop(timeout, sig)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL after `timeout` seconds."""
        self.stop_process(timeout)

    def __enter__(self) -> Traefik:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def gateway(self, namespace: str) -> dict[str, Any]:
        return gateway(namespace, self.port, self.extra[1] if self.extra else None)

    def apply_gateway(self, api: client.ApiClient, namespace: str, timeout: float = 60) -> dict[str, Any]:
        """Create (or replace) the GatewayClass and the Gateway through `api` (a kubernetes
        `client.ApiClient`) and wait until Traefik reports the Gateway Accepted and Programmed.
        Returns the Gateway as last read."""
        from kubernetes.client import CustomObjectsApi
        from kubernetes.client.exceptions import ApiException

        objects = CustomObjectsApi(api)
        gwc = gateway_class()
        try:
            objects.create_cluster_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, "gatewayclasses", gwc)
        except ApiException as err:
            if err.status != 409:
                raise
        gw = self.gateway(namespace)
        try:
            objects.create_namespaced_custom_object(GATEWAY_GROUP, GATEWAY_VERSION, namespace, "gateways", gw)
        except ApiException as err:
            if err.status != 409:
                raise
            current = cast(
                "dict[str, Any]",
                objects.get_namespaced_custom_object(
                    GATEWAY_GROUP, GATEWAY_VERSION, namespace, "gateways", GATEWAY_NAME
                ),
            )
            gw["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            objects.replace_namespaced_custom_object(
                GATEWAY_GROUP, GATEWAY_VERSION, namespace, "gateways", GATEWAY_NAME, gw
            )

        def programmed() -> dict[str, Any] | None:
            self._pinged()  # raises if traefik died
            read = cast(
                "dict[str, Any]",
                objects.get_namespaced_custom_object(
                    GATEWAY_GROUP, GATEWAY_VERSION, namespace, "gateways", GATEWAY_NAME
                ),
            )
            ok = condition_true(read, "Accepted") and condition_true(read, "Programmed")
            return read if ok else None

        return wait_for(f"Gateway {namespace}/{GATEWAY_NAME} Programmed by Traefik", programmed, timeout)


def main(argv: list[str] | None = None) -> int:
    return cache.main(__doc__, lambda: cache_dir(traefik_version()), build, argv)


if __name__ == "__main__":
    sys.exit(main())
