"""The inputs a run sends: rows (a dataset's, one per request), or a JSON file of examples.

A file is a list (or {"examples": [...]}) of objects:
`{"instances": [[...], ...], "labels": [...], "weight": 3}`; `labels` (one per row, optional)
are sent as feedback, `weight` (default 1) sets how often the example comes up in the mix.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .engine import Sample

MAX_WEIGHT = 1000


class MixError(ValueError):
    """The inputs file is not what it should be; the message names the place."""


def row_samples(instances: Sequence[Any], labels: Sequence[Any] | None = None) -> list[Sample]:
    """One sample per row (a one-row `POST /predict` body), with its true label when given."""
    if labels is not None and len(labels) != len(instances):
        raise MixError(f"labels must be one per row ({len(instances)}), got {len(labels)}")
    return [
        Sample(json.dumps({"instances": [row]}).encode(), None if labels is None else [labels[i]])
        for i, row in enumerate(instances)
    ]


def _example(i: int, item: Any, source: str) -> tuple[Sample, int]:
    where = f"{source}[{i}]"
    if not isinstance(item, dict):
        raise MixError(f"{where} must be an object with 'instances', got {type(item).__name__}")
    unknown = sorted(set(item) - {"instances", "labels", "weight", "summary"})
    if unknown:
        raise MixError(f"{where}.{unknown[0]} is not a known field (instances, labels, weight, summary)")
    rows = item.get("instances")
    if not isinstance(rows, list) or not rows:
        raise MixError(f"{where}.instances must be a non-empty array of rows")
    labels = item.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != len(rows)):
        raise MixError(f"{where}.labels must be an array with one label per row ({len(rows)})")
    weight = item.get("weight", 1)
    if type(weight) is not int or not 1 <= weight <= MAX_WEIGHT:
        raise MixError(f"{where}.weight must be an integer from 1 to {MAX_WEIGHT}, got {weight!r}")
    return Sample(json.dumps({"instances": rows}).encode(), labels), weight


def parse(doc: Any, source: str = "inputs", seed: int = 0) -> list[Sample]:
    """Samples in a shuffled order in which each example appears `weight` times."""
    items = doc.get("examples") if isinstance(doc, dict) else doc
    if not isinstance(items, list) or not items:
        raise MixError(f"{source} must be a non-empty JSON array of examples (or {{'examples': [...]}})")
    mixed: list[Sample] = []
    for i, item in enumerate(items):
        sample, weight = _example(i, item, source)
        mixed += [sample] * weight
    random.Random(seed).shuffle(mixed)
    return mixed


def load_file(path: Path) -> list[Sample]:
    try:
        doc = json.loads(path.read_text())
    except OSError as err:
        raise MixError(f"cannot read {path}: {err.strerror}") from None
    except ValueError as err:
        raise MixError(f"{path} is not valid JSON: {err}") from None
    return parse(doc, path.name)
