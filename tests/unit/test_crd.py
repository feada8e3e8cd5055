"""The generated CRD: no drift from the models, a structural schema, bounded for CEL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from modelship import api, crd

pytestmark = pytest.mark.unit


def schema() -> dict[str, Any]:
    version = crd.generate()["spec"]["versions"][0]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def nodes(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        yield from nodes(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from nodes(node["additionalProperties"], f"{path}{{}}")


def test_committed_crd_matches_the_models() -> None:
    assert crd.DEFAULT_OUTPUT.read_text() == crd.render(), "run `python -m modelship.crd`"
    assert crd.main(["--check"]) == 0


def test_check_mode_fails_on_drift(tmp_path: Any) -> None:
    stale = tmp_path / "crd.yaml"
    stale.write_text(crd.render().replace("maxItems: 32", "maxItems: 33"))
    assert crd.main(["--check", "--output", str(stale)]) == 1


def test_schema_is_structural() -> None:
    for path, node in nodes(schema()):
        assert not {"$ref", "$defs", "title", "const", "propertyNames", "allOf", "oneOf"} & node.keys(), path
        if "anyOf" in node:
            assert node.get("x-kubernetes-int-or-string") is True, path
        else:
            assert "type" in node, f"{path} has no type"
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path


def test_every_string_list_and_map_is_bounded_for_cel_cost() -> None:
    for path, node in nodes(schema()["properties"]["spec"], ".spec"):
        kind = node.get("type")
        if kind == "string" and "enum" not in node:
            assert "maxLength" in node, path
        if kind == "array":
            assert "maxItems" in node, path
        if kind == "object" and "additionalProperties" in node:
            assert "maxProperties" in node, path


def test_defaults_match_the_models() -> None:
    spec = schema()["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1
    assert spec["port"]["default"] == 8080
    assert spec["progressDeadline"]["default"] == "10m"
    assert spec["traffic"]["default"] == {"router": "service"}
    analysis = spec["analysis"]["properties"]
    assert analysis["noData"]["default"] == "inconclusive"


def test_cross_field_rules_are_cel_with_messages_naming_the_field() -> None:
    rules = [(p, r) for p, n in nodes(schema()) for r in n.get("x-kubernetes-validations", [])]
    assert len(rules) >= 12
    for path, rule in rules:
        names_field = re.search(r"(spec|metadata)\.\w+|\.\w+", rule["message"]) or rule.get("fieldPath")
        assert names_field or path.count(".") >= 2, (path, rule)


def test_names_subresources_and_printer_columns() -> None:
    spec = crd.generate()["spec"]
    assert spec["names"]["kind"] == api.KIND
    assert spec["names"]["shortNames"] == api.SHORT_NAMES
    version = spec["versions"][0]
    assert version["subresources"]["status"] == {}
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    columns = [c["name"].upper() for c in version["additionalPrinterColumns"] if not c.get("priority")]
    assert columns == ["PHASE", "STABLE", "CANARY", "WEIGHT", "STEP", "PREVIEW", "AGE"]


def test_status_declares_the_fields_later_features_need() -> None:
    status = schema()["properties"]["status"]["properties"]
    for name in ("phase", "stableRevision", "rollout", "conditions", "analysis"):
        assert name in status, name
    canary = status["rollout"]["properties"]["canary"]["properties"]
    for name in ("revision", "step", "weight", "pauseStartTime"):
        assert name in canary, name
    assert status["phase"]["enum"] == [
        "Pending",
        "Progressing",
        "Paused",
        "Healthy",
        "Degraded",
        "RolledBack",
    ]


def test_an_exclusive_bound_becomes_openapi_3_0s_bound_with_a_flag() -> None:
    # pydantic's `gt=0` writes JSON Schema 2020's `exclusiveMinimum: 0`; the API server reads
    # OpenAPI 3.0, where the keyword is a boolean, and refuses the whole CRD otherwise.
    node = crd.structural({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 5}, {})
    assert node == {
        "type": "number",
        "minimum": 0,
        "exclusiveMinimum": True,
        "maximum": 5,
        "exclusiveMaximum": True,
    }
    assert crd.structural({"type": "number", "minimum": 1}, {}) == {"type": "number", "minimum": 1}


def test_no_numeric_exclusive_bound_reaches_the_crd() -> None:
    def walk(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("exclusiveMinimum", "exclusiveMaximum"):
                    yield value
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    assert all(value is True for value in walk(crd.generate()))
