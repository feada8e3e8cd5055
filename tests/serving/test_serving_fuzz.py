"""Schemathesis fuzzes every operation of the live server's own OpenAPI document: never a 5xx.

Positive cases (valid by the schema) and, for operations that take a body, negative ones (violating
it; a string path parameter has no negative values) are sent over real HTTP. The check is that no
response is a server error, which is what "bad input never crashes it" means. Schemathesis'
strategies are driven by Hypothesis directly (its pytest lazy-fixture loader fails under pytest 9).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from modelserver.openapi import document
from modelserver.sample_models import FEATURES
from modelserver.schema import InputSchema
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error

from .serving_helpers import Server

pytestmark = pytest.mark.unit

EXAMPLES_PER_OPERATION = 60  # bounded: the whole run takes well under a minute

# The operations, from the same generator the server uses (so a new route is fuzzed automatically).
_DOC = document("risk", InputSchema(FEATURES), 64)
OPERATIONS = [
    (method.upper(), path, "requestBody" in op)
    for path, item in _DOC["paths"].items()
    for method, op in item.items()
]
CASES = [(m, p, GenerationMode.POSITIVE) for m, p, _ in OPERATIONS] + [
    (m, p, GenerationMode.NEGATIVE) for m, p, takes_input in OPERATIONS if takes_input
]


@pytest.fixture(scope="module")
def api_schema(sk_server: Server) -> Any:
    return schemathesis.openapi.from_url(f"{sk_server.url}/openapi.json")


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {g.value}" for m, p, g in CASES])
def test_no_server_error(
    api_schema: Any, sk_server: Server, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]
    seen: list[int] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=sk_server.url, checks=[not_a_server_error])
        seen.append(response.status_code)

    fuzz()
    assert seen, "no request was generated"
    assert all(code < 500 for code in seen)
    assert sk_server.get("/healthz").status == 200
