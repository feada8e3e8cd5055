"""`list` and `get`: the table `kubectl get modeldeployments` prints, or the objects as JSON, YAML or
names (`-o`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import yaml

from modelship import api
from modelship.kube.storage import Storage, md_path
from modelship.plugin import table
from modelship.plugin.verbs import get


def formatted(objs: Sequence[dict[str, Any]], output: str | None, all_namespaces: bool, one: bool) -> str:
    """`objs` as `-o` asks; `one`: a single object's JSON/YAML is the object, not a List."""
    if output in ("json", "yaml"):
        doc: dict[str, Any] = (
            dict(objs[0]) if one else {"apiVersion": "v1", "kind": "List", "items": list(objs)}
        )
        if output == "json":
            return json.dumps(doc, indent=4)
        return yaml.safe_dump(doc, sort_keys=False).rstrip("\n")
    if output == "name":
        return "\n".join(f"{api.PLURAL[:-1]}.{api.GROUP}/{o['metadata']['name']}" for o in objs)
    rows = table.rows(objs, output == "wide", all_namespaces, datetime.now(UTC))
    return table.layout(rows)


def list_(kube: Storage, namespace: str, all_namespaces: bool, output: str | None) -> str:
    """Sorted like kubectl (namespace, then name); empty when there are none (see `none_found`)."""
    items = kube.items(md_path(None if all_namespaces else namespace))
    if not items and output not in ("json", "yaml"):
        return ""
    items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
    return formatted(items, output, all_namespaces, one=False)


def get_(kube: Storage, namespace: str, name: str, output: str | None) -> str:
    return formatted([get(kube, namespace, name)], output, all_namespaces=False, one=True)


def none_found(namespace: str, all_namespaces: bool) -> str:
    """kubectl's words for an empty list (on stderr, as kubectl prints them)."""
    return "No resources found" + ("" if all_namespaces else f" in {namespace} namespace.")
