"""`list` and `get`'s output, pure: the CRD's printer columns laid out as kubectl lays them out
(tests/integration/test_plugin.py compares with the real `kubectl get modeldeployments`)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml

from modelship.crd import PRINTER_COLUMNS
from modelship.plugin import show, table

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (-5, "<invalid>"),
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (15 * 60 + 7, "15m"),
        (179 * 60, "179m"),
        (4 * 3600 + 10 * 60, "4h10m"),
        (5 * 3600, "5h"),
        (30 * 3600, "30h"),
        (3 * 86400 + 5 * 3600, "3d5h"),
        (12 * 86400, "12d"),
        (800 * 86400, "2y70d"),
        (9 * 365 * 86400, "9y"),
    ],
)
def test_age_is_printed_as_kubectl_prints_it(seconds: int, shown: str) -> None:
    assert table.age(timedelta(seconds=seconds)) == shown


def md(name: str, namespace: str = "ml", **status: Any) -> dict[str, Any]:
    created = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "status": status,
    }


CANARY = md(
    "fraud-detector",
    phase="Progressing",
    stableRevision="fraud-detector-6d4f",
    rollout={"canary": {"revision": "fraud-detector-9c2a", "weight": 20, "actualWeight": 20, "step": 0}},
)


def test_the_columns_are_the_crds_printer_columns_with_wide_adding_the_rest() -> None:
    narrow = table.rows([CANARY], wide=False, all_namespaces=False, now=NOW)[0]
    wide = table.rows([CANARY], wide=True, all_namespaces=True, now=NOW)[0]
    assert narrow == ["NAME"] + [c["name"].upper() for c in PRINTER_COLUMNS if not c.get("priority")]
    assert narrow[:3] == ["NAME", "PHASE", "STABLE"] and narrow[-1] == "AGE"
    assert wide == ["NAMESPACE", "NAME"] + [c["name"].upper() for c in PRINTER_COLUMNS]


def test_a_row_shows_each_field_and_nothing_for_what_the_object_lacks() -> None:
    header, row = table.rows([CANARY], wide=False, all_namespaces=False, now=NOW)
    cells = dict(zip(header, row, strict=True))
    assert cells["NAME"] == "fraud-detector" and cells["PHASE"] == "Progressing"
    assert cells["CANARY"] == "fraud-detector-9c2a" and cells["WEIGHT"] == "20"
    assert cells["PREVIEW"] == table.EMPTY == ""
    assert cells["AGE"] == "5m"


def test_layout_pads_every_column_but_the_last_to_its_widest_cell_plus_3_at_least_10() -> None:
    text = table.layout([["NAME", "PHASE", "AGE"], ["fraud-detector", "Healthy", "5m"]])
    assert text.split("\n") == [
        "NAME             PHASE     AGE",
        "fraud-detector   Healthy   5m",
    ]


def test_json_and_yaml_of_a_list_are_a_v1_list_and_of_one_object_the_object() -> None:
    many = json.loads(show.formatted([CANARY, md("b")], "json", all_namespaces=False, one=False))
    assert many["kind"] == "List" and [o["metadata"]["name"] for o in many["items"]] == [
        "fraud-detector",
        "b",
    ]
    one = yaml.safe_load(show.formatted([CANARY], "yaml", all_namespaces=False, one=True))
    assert one == CANARY
    assert show.formatted([CANARY], "name", False, True) == "modeldeployment.modelship.io/fraud-detector"


def test_an_empty_list_says_so_as_kubectl_does() -> None:
    assert show.none_found("ml", all_namespaces=False) == "No resources found in ml namespace."
    assert show.none_found("ml", all_namespaces=True) == "No resources found"
