"""The pydantic side of the API: examples parse, regex rules refuse bad values, durations parse."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from modelship import api

from .enginesim import spec

pytestmark = pytest.mark.unit

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.yaml"))
GOOD_DIGEST = "registry.example/fraud@sha256:" + "0123456789abcdef" * 4


def test_there_are_the_examples_users_copy() -> None:
    assert {p.name for p in EXAMPLES} >= {"basic.yaml", "canary.yaml", "bluegreen.yaml"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_as_model_deployments(path: Path) -> None:
    doc = yaml.safe_load(path.read_text())
    assert (doc["apiVersion"], doc["kind"]) == (api.API_VERSION, api.KIND)
    assert len(doc["metadata"]["name"]) <= api.MAX_NAME_LENGTH
    api.ModelDeploymentSpec.model_validate(doc["spec"])


def _custom_queries() -> list[tuple[str, str]]:
    """(where, query) of every custom analysis query in the examples and the docs' YAML."""
    root = Path(__file__).resolve().parents[2]
    found = []
    for path in EXAMPLES:
        doc = yaml.safe_load(path.read_text())
        for metric in (doc["spec"].get("analysis") or {}).get("metrics", []):
            if "query" in metric:
                found.append((f"{path.name}:{metric['name']}", metric["query"]))
    for path in sorted((root / "docs").glob("*.md")):
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip().startswith("query: '"):
                found.append((f"{path.name}:{n}", line.split("query: ", 1)[1].strip("'")))
    return found


@pytest.mark.parametrize(("where", "query"), _custom_queries())
def test_custom_queries_users_copy_filter_by_namespace_and_use_the_window(where: str, query: str) -> None:
    # Revision names are equal across namespaces for equal specs: without the namespace a query
    # mixes two teams' models.
    if "{{revision}}" in query or "{{stable_revision}}" in query:
        assert 'namespace="{{namespace}}"' in query, where
    if "rate(" in query or "increase(" in query:
        assert "[{{window}}]" in query, where


@pytest.mark.parametrize(
    "image",
    [
        "registry.example/fraud:1.2",
        "registry.example/fraud@sha256:" + "0123456789ABCDEF" * 4,
        "registry.example/fraud@sha256:" + "ab" * 20,
        "registry.example/fraud@sha512:" + "ab" * 32,
        "@sha256:" + "ab" * 32,
    ],
)
def test_images_not_pinned_by_a_sha256_digest_are_refused(image: str) -> None:
    with pytest.raises(ValidationError, match="must pin the image by digest"):
        spec(image=image)


def test_a_digest_reference_with_a_registry_port_is_accepted() -> None:
    assert spec(image="localhost:5000/team/fraud@sha256:" + "ab" * 32).image.startswith("localhost:5000")


def test_defaults_come_from_the_models() -> None:
    s = spec()
    assert (s.port, s.traffic.router, s.progress_deadline, s.paused) == (8080, "service", "10m", False)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("1h30m", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert api.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "1.5s", "1d", "-1s", "s"])
def test_malformed_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        api.parse_duration(text)
    with pytest.raises(ValidationError, match="must be a duration"):
        spec(progressDeadline=text)


def test_quantities_accept_ints_and_kubernetes_strings_only() -> None:
    ok = spec(resources={"requests": {"cpu": "500m", "memory": 1073741824}})
    assert ok.resources is not None
    with pytest.raises(ValidationError, match="not a Kubernetes quantity"):
        spec(resources={"requests": {"cpu": "half"}})


def test_dump_is_camel_case_without_unset_fields() -> None:
    out = api.dump(spec())
    assert "progressDeadline" in out
    assert "smokeTest" not in out
    assert out["strategy"] == {
        "canary": {"steps": [{"setWeight": 50}], "scaleDownDelay": "30s", "abortScaleDownDelay": "30s"}
    }


def test_model_deployments_in_the_api_reference_are_valid() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    blocks = [b.split("```", 1)[0] for b in text.split("```yaml\n")[1:]]
    docs = [
        d
        for b in blocks
        for d in yaml.safe_load_all(b)  # a block may hold several objects (a PV and its claim)
        if isinstance(d, dict) and d.get("kind") == api.KIND
    ]
    assert docs
    for doc in docs:
        api.ModelDeploymentSpec.model_validate(doc["spec"])


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0s"), (45, "45s"), (600, "10m"), (3723, "1h2m3s"), (3600, "1h"), (59.9, "59s")]
)
def test_format_duration_writes_what_parse_duration_reads(seconds: float, text: str) -> None:
    assert api.format_duration(timedelta(seconds=seconds)) == text
    assert api.parse_duration(text) == timedelta(seconds=int(seconds))
