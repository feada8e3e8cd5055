"""The metrics contract: names, types, labels and buckets of every metric the server exports.

The single source of truth is ``metrics_contract.json`` next to this module, so the operator's
analysis templates (and anything not written in Python) can read the same file. This module only
loads it into typed objects.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Literal

MetricType = Literal["counter", "gauge", "histogram"]


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    labels: tuple[str, ...]  # including the common labels, in exposition order
    help: str
    buckets: tuple[float, ...] = ()


@dataclass(frozen=True)
class Contract:
    version: int
    common_labels: tuple[str, ...]
    metrics: tuple[MetricSpec, ...]
    label_values: dict[str, tuple[str, ...]]

    def by_name(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.metrics)


def contract_path() -> str:
    """Filesystem path of the JSON file, for tools that read it directly."""
    return str(resources.files("modelserver").joinpath("metrics_contract.json"))


@cache
def load() -> Contract:
    raw: dict[str, Any] = json.loads(
        resources.files("modelserver").joinpath("metrics_contract.json").read_text("utf-8")
    )
    common = tuple(raw["common_labels"])
    metrics = tuple(
        MetricSpec(
            name=m["name"],
            type=m["type"],
            labels=common + tuple(m["labels"]),
            help=m["help"],
            buckets=tuple(float(b) for b in m.get("buckets", ())),
        )
        for m in raw["metrics"]
    )
    values = {k: tuple(v) for k, v in raw["label_values"].items()}
    return Contract(version=int(raw["version"]), common_labels=common, metrics=metrics, label_values=values)


# Names as constants for code that refers to one metric (the server, the operator's templates).
REQUESTS_TOTAL = "modelserver_requests_total"
REQUEST_DURATION = "modelserver_request_duration_seconds"
INFERENCE_DURATION = "modelserver_inference_duration_seconds"
PREDICTION_CONFIDENCE = "modelserver_prediction_confidence"
FEEDBACK_TOTAL = "modelserver_feedback_total"
MODEL_INFO = "modelserver_model_info"
SHADOW_REQUESTS_TOTAL = "modelserver_shadow_requests_total"
SHADOW_ROWS_TOTAL = "modelserver_shadow_rows_total"
SHADOW_AGREEMENTS_TOTAL = "modelserver_shadow_agreements_total"
SHADOW_ABS_DIFFERENCE_TOTAL = "modelserver_shadow_abs_difference_total"
SHADOW_CONFIDENCE_ROWS_TOTAL = "modelserver_shadow_confidence_rows_total"
SHADOW_CONFIDENCE_TOTAL = "modelserver_shadow_confidence_total"
