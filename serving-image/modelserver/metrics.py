"""Prometheus metrics, built from the contract so the names exist in exactly one place."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.process_collector import ProcessCollector

from . import metrics_contract as mc
from .shadow import Comparison

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The *_created series double the exposition for a timestamp Prometheus does not need.
disable_created_metrics()  # type: ignore[no-untyped-call]  # untyped in prometheus_client


# The routes that serve the model (the builtin analysis templates select these).
MODEL_ROUTES = ("/predict", "/v2/models/{name}/infer")


class Metrics:
    """The server's metrics, with the model name/version labels bound once."""

    def __init__(self, model_name: str, model_version: str) -> None:
        contract = mc.load()
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_resident_memory_bytes and friends
        made: dict[str, Any] = {}
        for spec in contract.metrics:
            kwargs: dict[str, Any] = {"labelnames": spec.labels, "registry": self.registry}
            if spec.type == "counter":
                made[spec.name] = Counter(spec.name, spec.help, **kwargs)
            elif spec.type == "gauge":
                made[spec.name] = Gauge(spec.name, spec.help, **kwargs)
            else:
                made[spec.name] = Histogram(spec.name, spec.help, buckets=spec.buckets, **kwargs)
        base = (model_name, model_version)
        self._base = base
        self._requests: Counter = made[mc.REQUESTS_TOTAL]
        self._request_duration: Histogram = made[mc.REQUEST_DURATION]
        self._inference = made[mc.INFERENCE_DURATION].labels(*base)
        self._confidence = made[mc.PREDICTION_CONFIDENCE].labels(*base)
        feedback: Counter = made[mc.FEEDBACK_TOTAL]
        self._correct = feedback.labels(*base, "correct")
        self._incorrect = feedback.labels(*base, "incorrect")
        self._info: Gauge = made[mc.MODEL_INFO]
        self._shadow: dict[str, Counter] = {
            name: made[name]
            for name in (
                mc.SHADOW_REQUESTS_TOTAL,
                mc.SHADOW_ROWS_TOTAL,
                mc.SHADOW_AGREEMENTS_TOTAL,
                mc.SHADOW_ABS_DIFFERENCE_TOTAL,
                mc.SHADOW_CONFIDENCE_ROWS_TOTAL,
                mc.SHADOW_CONFIDENCE_TOTAL,
            )
        }
        # labels() takes a lock and hashes strings; cache the children the hot path uses.
        self._req_children: dict[tuple[str, str, int], Any] = {}
        self._dur_children: dict[str, Any] = {}
        # Export zeros from the start so rate() and "no data" checks see the series before traffic.
        # increase() needs two samples of a series: a 500 series born with the first error would
        # be seen one scrape later than one that was already there at 0.
        self._correct.inc(0)
        self._incorrect.inc(0)
        for route in MODEL_ROUTES:
            self._requests.labels(*base, route, "POST", "500").inc(0)
            self._request_duration.labels(*base, route)

    def set_info(self, framework: str, sha256: str, accelerator: str, accelerator_requested: str) -> None:
        self._info.labels(*self._base, framework, sha256, accelerator, accelerator_requested).set(1)

    def observe_request(self, route: str, method: str, code: int, seconds: float) -> None:
        key = (route, method, code)
        child = self._req_children.get(key)
        if child is None:
            child = self._requests.labels(*self._base, route, method, str(code))
            self._req_children[key] = child
        child.inc()
        dur = self._dur_children.get(route)
        if dur is None:
            dur = self._request_duration.labels(*self._base, route)
            self._dur_children[route] = dur
        dur.observe(seconds)

    def observe_inference(self, seconds: float) -> None:
        self._inference.observe(seconds)

    def observe_confidence(self, confidence: npt.NDArray[np.float64]) -> None:
        observe = self._confidence.observe
        for value in confidence.tolist():
            observe(value)

    def observe_feedback(self, correct: int, incorrect: int) -> None:
        if correct:
            self._correct.inc(correct)
        if incorrect:
            self._incorrect.inc(incorrect)

    def observe_shadow(self, revision: str, result: str, comparison: Comparison | None) -> None:
        """One shadow copy to `revision` (modelserver.shadow): its result and, when compared, what
        the comparison found. Off the request path: a worker calls it, so no child cache."""
        shadow, base = self._shadow, (*self._base, revision)
        shadow[mc.SHADOW_REQUESTS_TOTAL].labels(*base, result).inc()
        if comparison is None:
            return
        shadow[mc.SHADOW_ROWS_TOTAL].labels(*base).inc(comparison.rows)
        shadow[mc.SHADOW_AGREEMENTS_TOTAL].labels(*base).inc(comparison.agreements)
        shadow[mc.SHADOW_ABS_DIFFERENCE_TOTAL].labels(*base).inc(comparison.abs_difference)
        shadow[mc.SHADOW_CONFIDENCE_ROWS_TOTAL].labels(*base).inc(comparison.confidence_rows)
        # Two sums, not their difference: a counter only grows, and the shift may be negative.
        confidence = shadow[mc.SHADOW_CONFIDENCE_TOTAL]
        confidence.labels(*base, "stable").inc(comparison.stable_confidence)
        confidence.labels(*base, "candidate").inc(comparison.candidate_confidence)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
