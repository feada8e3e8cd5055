"""The metrics contract has one source (metrics_contract.json); every copy must match it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from modelserver import metrics_contract as mc

from .serving_helpers import REPO, Server

pytestmark = pytest.mark.unit

DOC = REPO / "docs" / "metrics.md"


def _doc_table() -> dict[str, tuple[str, list[str]]]:
    """name -> (type, labels) from the table in docs/metrics.md between the contract markers."""
    text = DOC.read_text()
    section = text.split("<!-- contract:start -->")[1].split("<!-- contract:end -->")[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*`(\w+)`\s*\|\s*(\w+)\s*\|\s*(.*?)\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), re.findall(r"`(\w+)`", m.group(3)))
    return rows


def test_docs_list_exactly_the_contract() -> None:
    contract = mc.load()
    table = _doc_table()
    assert set(table) == set(contract.names)
    for spec in contract.metrics:
        kind, labels = table[spec.name]
        assert kind == spec.type, spec.name
        assert labels == list(spec.labels), spec.name


def test_constants_match_the_json() -> None:
    constants = {
        mc.REQUESTS_TOTAL,
        mc.REQUEST_DURATION,
        mc.INFERENCE_DURATION,
        mc.PREDICTION_CONFIDENCE,
        mc.FEEDBACK_TOTAL,
        mc.MODEL_INFO,
        mc.SHADOW_REQUESTS_TOTAL,
        mc.SHADOW_ROWS_TOTAL,
        mc.SHADOW_AGREEMENTS_TOTAL,
        mc.SHADOW_ABS_DIFFERENCE_TOTAL,
        mc.SHADOW_CONFIDENCE_ROWS_TOTAL,
        mc.SHADOW_CONFIDENCE_TOTAL,
    }
    assert constants == set(mc.load().names)


def test_json_is_the_file_tools_read() -> None:
    raw = json.loads(Path(mc.contract_path()).read_text())
    assert [m["name"] for m in raw["metrics"]] == list(mc.load().names)


def test_docs_example_queries_use_contract_names() -> None:
    names = set(mc.load().names)
    queries = re.findall(r"```promql\n(.*?)```", DOC.read_text(), re.S)
    assert queries
    used = set()
    for q in queries:
        used |= {n for n in re.findall(r"\b(modelserver_\w+?)(?:_bucket|_count|_sum)?\b", q)}
    assert used and used <= names, used - names


def test_server_exports_exactly_the_contract(sk_server: Server) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    sk_server.post("/predict", {"instances": [[1, 2, 3, 4]]})
    text = sk_server.get("/metrics").body.decode()
    families = {f.name: f for f in text_string_to_metric_families(text) if f.name.startswith("modelserver_")}
    contract = mc.load()
    # The parser drops the _total suffix of counters from family names.
    exposed = {name + "_total" if families[name].type == "counter" else name for name in families}
    assert exposed == set(contract.names)
    for spec in contract.metrics:
        fam = families[spec.name.removesuffix("_total") if spec.type == "counter" else spec.name]
        assert fam.type == spec.type
        for sample in fam.samples:
            assert set(sample.labels) - {"le"} == set(spec.labels), (spec.name, sample.labels)
