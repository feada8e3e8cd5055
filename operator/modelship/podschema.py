"""Generate the schema of `spec.template.spec` from Kubernetes' own OpenAPI definitions.

    python -m modelship.podschema            # (re)write operator/modelship/podspec_schema.json
    python -m modelship.podschema --check    # exit 1 when the committed file differs

The definitions come from the `k8s.io/kubernetes` module at the version the project pins
(hack/devcluster/versions.env), `api/openapi-spec/v3/api__v1_openapi.json`, found in the Go
module cache or downloaded with `go mod download`. Only the PodSpec fields the overlay
honours are kept (`POD_SPEC_FIELDS`); the result is a Kubernetes structural schema: `$ref`s
inlined, descriptions and patch-strategy hints dropped, int-or-string and quantities in CRD
form, and every string, list and map bounded so that CEL rules over them stay in the API
server's cost budget. `modelship.crd` splices it into the CRD.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from modelship import api, generated

ROOT = Path(__file__).resolve().parents[2]
VERSIONS = ROOT / "hack" / "devcluster" / "versions.env"
DEFAULT_OUTPUT = Path(__file__).with_name("podspec_schema.json")
OPENAPI_FILE = "api/openapi-spec/v3/api__v1_openapi.json"
MODULE = "k8s.io/kubernetes"
_PREFIX = "#/components/schemas/"
_POD_SPEC = "io.k8s.api.core.v1.PodSpec"

# The PodSpec fields `spec.template.spec` accepts: what manifests.deployment merges.
# Anything else (hostNetwork, ...) is an unknown field and refused.
POD_SPEC_FIELDS = (
    "affinity",
    "automountServiceAccountToken",
    "containers",
    "imagePullSecrets",
    "initContainers",
    "nodeSelector",
    "priorityClassName",
    "securityContext",
    "serviceAccountName",
    "terminationGracePeriodSeconds",
    "tolerations",
    "topologySpreadConstraints",
    "volumes",
)

# Bounds Kubernetes' schema leaves open. Generous, except where modelship's CEL rules iterate
# (containers, their env and mounts, volumes): there they keep the rules' estimated cost low.
MAX_STRING = 32768
MAX_NAME = 317  # a qualified label key: a 253-character DNS prefix, "/", a 63-character name
MAX_ITEMS = 256
MAX_PROPERTIES = 256
MAX_ITEMS_BY_FIELD = {"containers": 16, "initContainers": 16, "volumes": 64, "volumeMounts": 64, "env": 256}
_NAME_FIELDS = {"name", "key", "mountPath", "serviceAccountName", "priorityClassName", "topologyKey"}
_DROP = {"description", "x-kubernetes-patch-strategy", "x-kubernetes-patch-merge-key", "x-kubernetes-unions"}


def kubernetes_version(versions: Path = VERSIONS) -> str:
    match = re.search(r"^KUBERNETES_VERSION=(\S+)$", versions.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"no KUBERNETES_VERSION in {versions}")
    return match.group(1)


def openapi_path(version: str, download: bool = True) -> Path | None:
    """The module's OpenAPI file: from the Go module cache, else (with `download`) through
    `go mod download`; None when it is not there and cannot be fetched."""
    cache = os.environ.get("GOMODCACHE") or str(
        Path(os.environ.get("GOPATH", Path.home() / "go")) / "pkg/mod"
    )
    cached = Path(cache) / f"{MODULE}@{version}" / OPENAPI_FILE
    if cached.is_file():
        return cached
    if not download:
        return None
    try:
        done = subprocess.run(
            ["go", "mod", "download", "-json", f"{MODULE}@{version}"],
            check=False,
            capture_output=True,
            text=True,
        )
    except FileNotFoundError:
        return None
    record = json.loads(done.stdout or "{}")
    path = Path(record.get("Dir", "/nonexistent")) / OPENAPI_FILE
    return path if path.is_file() else None


def generate(openapi: dict[str, Any], version: str) -> dict[str, Any]:
    """The data file's content: the PodSpec subset as a structural schema, and where it came from."""
    schemas: dict[str, Any] = openapi["components"]["schemas"]
    pod_spec = schemas[_POD_SPEC]
    missing = set(POD_SPEC_FIELDS) - pod_spec["properties"].keys()
    if missing:
        raise RuntimeError(f"{_POD_SPEC} has no {sorted(missing)} in {MODULE}@{version}")
    subset = {
        "type": "object",
        "properties": {k: v for k, v in pod_spec["properties"].items() if k in POD_SPEC_FIELDS},
    }
    return {
        "source": f"{MODULE}@{version} {OPENAPI_FILE} ({_POD_SPEC}, fields: {', '.join(POD_SPEC_FIELDS)})",
        "podSpec": _structural(subset, schemas, field="spec"),
    }


def _structural(node: Any, schemas: dict[str, Any], field: str) -> Any:
    if not isinstance(node, dict):
        return node
    node = dict(node)
    wrapped = node.pop("allOf", None)
    if wrapped:  # `allOf: [{$ref}]` beside a field's description and default
        (only,) = wrapped
        node = {**only, **{k: v for k, v in node.items() if k != "default"}}
    ref = node.pop("$ref", None)
    if ref is not None:
        name = ref.removeprefix(_PREFIX)
        if name == "io.k8s.apimachinery.pkg.util.intstr.IntOrString":
            return _int_or_string()
        if name == "io.k8s.apimachinery.pkg.api.resource.Quantity":
            return {**_int_or_string(), "pattern": api.QUANTITY_RE, "maxLength": 64}
        node = {**schemas[name], **node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP or key == "default":
            continue
        if key == "properties":
            out[key] = {name: _structural(sub, schemas, name) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, schemas, field)
        else:
            out[key] = value
    _keep_list_map_key_defaults(out, node, schemas)
    return _bounded(out, field)


def _keep_list_map_key_defaults(out: dict[str, Any], node: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A list-map key must be required or defaulted (ports by containerPort and protocol)."""
    keys = out.get("x-kubernetes-list-map-keys")
    if not keys:
        return
    item = node["items"]
    item = {**schemas[item["$ref"].removeprefix(_PREFIX)], **item} if "$ref" in item else item
    for key in keys:
        if key not in item.get("required", []):
            default = item["properties"][key].get("default")
            if default is None:
                raise RuntimeError(f"list-map key {key} is neither required nor defaulted")
            out["items"]["properties"][key]["default"] = default


def _int_or_string() -> dict[str, Any]:
    return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}


def _bounded(node: dict[str, Any], field: str) -> dict[str, Any]:
    kind = node.get("type")
    if kind == "string" and "enum" not in node and "maxLength" not in node:
        node["maxLength"] = MAX_NAME if field in _NAME_FIELDS else MAX_STRING
    elif kind == "array" and "maxItems" not in node:
        node["maxItems"] = MAX_ITEMS_BY_FIELD.get(field, MAX_ITEMS)
    elif kind == "object" and "additionalProperties" in node and "maxProperties" not in node:
        node["maxProperties"] = MAX_PROPERTIES
    elif "x-kubernetes-int-or-string" in node and "maxLength" not in node:
        node["maxLength"] = MAX_NAME
    return node


def render(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def load(path: Path = DEFAULT_OUTPUT) -> dict[str, Any]:
    """The committed PodSpec subset schema (what `modelship.crd` splices into the CRD)."""
    data: dict[str, Any] = json.loads(path.read_text())["podSpec"]
    return data


def fresh(version: str | None = None) -> str | None:
    """The data file as generated now from the module; None when the module source is absent."""
    version = version or kubernetes_version()
    path = openapi_path(version)
    if path is None:
        return None
    return render(generate(json.loads(path.read_text()), version))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m modelship.podschema", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="default: %(default)s")
    parser.add_argument("--check", action="store_true", help="fail if the file differs from the module's")
    args = parser.parse_args(argv)
    text = fresh()
    if text is None:
        print(
            f"{MODULE}@{kubernetes_version()} is not in the Go module cache and `go mod download` failed",
            file=sys.stderr,
        )
        return 2
    return generated.write_or_check(args.output, text, args.check, "python -m modelship.podschema")


if __name__ == "__main__":
    sys.exit(main())
