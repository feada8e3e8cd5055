"""The served model: the startup sequence (verify, load, self-test) and the model-level operations."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from . import __version__, artifact, backends
from .backends import Model, Prediction
from .backends.sklearn_model import SklearnModel
from .config import Settings
from .errors import HTTPError, StartupError
from .feedback import FeedbackStore
from .metrics import Metrics
from .schema import InputSchema, Matrix
from .selftest import run_golden

log = logging.getLogger("modelserver")


def _schema(model: Model, declared: Any, source: str) -> InputSchema:
    names: tuple[str, ...] | None = None
    if declared is not None:
        feats = declared.get("features") if isinstance(declared, dict) else None
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats) or not feats:
            raise StartupError(f"{source}: 'features' must be a non-empty list of names")
        if len(set(feats)) != len(feats):
            raise StartupError(f"{source}: feature names must be unique")
        names = tuple(feats)
    elif model.feature_names is not None:
        names = model.feature_names
    elif model.n_features is not None:
        names = tuple(f"x{i}" for i in range(model.n_features))
    if names is None:
        raise StartupError(f"cannot tell how many features the model takes; add {source} with 'features'")
    if model.n_features is not None and len(names) != model.n_features:
        raise StartupError(f"{source} names {len(names)} features but the model takes {model.n_features}")
    return InputSchema(names, max_abs=model.max_abs_input)


def _examples(raw: Any, schema: InputSchema, source: str) -> list[dict[str, Any]]:
    items = raw.get("examples") if isinstance(raw, dict) else raw
    if not isinstance(items, list):
        raise StartupError(f"{source} must be a list of examples or {{'examples': [...]}}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or "instances" not in item:
            raise StartupError(f"{source}[{i}] must be an object with 'instances'")
        try:
            schema.rows_to_matrix(item["instances"], max_rows=1 << 30, path=f"{source}[{i}].instances")
        except HTTPError as e:  # an example that the server itself refuses is a broken bundle
            raise StartupError(e.reason) from None
        out.append({"summary": str(item.get("summary", f"example {i + 1}")), "instances": item["instances"]})
    return out


def _probes(schema: InputSchema, golden: Any, examples: list[dict[str, Any]]) -> Matrix:
    """Rows to compare the sklearn fast path with sklearn itself: the bundle's own plus random ones."""
    rows = [np.zeros((1, schema.n_features))]
    for ex in examples:
        rows.append(schema.rows_to_matrix(ex["instances"], 1 << 30))
    if isinstance(golden, dict):
        rows.append(schema.rows_to_matrix(golden["instances"], 1 << 30))
    rng = np.random.default_rng(0)
    known = np.vstack(rows)
    spread = np.maximum(np.abs(known).max(axis=0), 1.0)
    rows.append(rng.standard_normal((64, schema.n_features)) * spread)
    return np.vstack(rows)


class Service:
    def __init__(self, settings: Settings, model: Model, schema: InputSchema, sha256: str) -> None:
        self.settings = settings
        self.model = model
        self.schema = schema
        self.sha256 = sha256
        self.metrics = Metrics(settings.model_name, settings.model_version)
        self.metrics.set_info(model.framework, sha256, model.accelerator, settings.accelerator)
        self.feedback = FeedbackStore(settings.feedback_cache_size)
        self.examples: list[dict[str, Any]] = []
        self.golden_rows = 0
        self.n_classes: int | None = None  # columns of the probabilities, None if the model has none
        self.ready = False

    @classmethod
    def start(cls, settings: Settings) -> Service:
        """Verify, load, self-test. Raises StartupError (never returns a half-ready service)."""
        t0 = time.perf_counter()
        sha = artifact.verify(settings.model_path, settings.model_sha256, "MODEL_SHA256")
        if settings.model_sha256 is None:
            log.warning("serving an UNVERIFIED model %s (sha256 %s)", settings.model_path, sha)
        model = backends.load(settings)
        d = settings.bundle_dir
        declared = artifact.read_json(d / "schema.json")
        schema = _schema(model, declared, "schema.json")
        if isinstance(declared, dict) and isinstance(declared.get("classes"), list):
            named = tuple(declared["classes"])
            if model.classes is not None and model.classes != named:
                raise StartupError(
                    f"schema.json classes {list(named)} differ from the model's own {list(model.classes)} "
                    "(order matters: it is the order of the probabilities)"
                )
            model.with_classes(named)
        svc = cls(settings, model, schema, sha)
        raw_examples = artifact.read_json(d / "examples.json")
        if raw_examples is not None:
            svc.examples = _examples(raw_examples, schema, "examples.json")
        golden = artifact.read_json(d / "golden.json")
        if isinstance(model, SklearnModel) and settings.sklearn_fast_path:
            outcome = model.enable_fast_path(_probes(schema, golden, svc.examples))
            log.info("sklearn fast path: %s", outcome)
        if golden is not None:
            svc.golden_rows = run_golden(model, schema, golden, "golden.json")
        # Warm up (the first real request should not pay for lazy initialisation) and learn the outputs.
        probe = model.predict(np.zeros((1, schema.n_features)))
        svc.n_classes = None if probe.probabilities is None else int(probe.probabilities.shape[1])
        if settings.faults.on:
            log.warning(
                "FAULT INJECTION IS ON: %.0f%% of predict requests will fail and each will take %gs longer, "
                "/healthz fails after %gs up (0: never) (MODELSERVER_FAULT_ERROR_RATIO, "
                "MODELSERVER_FAULT_LATENCY, MODELSERVER_FAULT_UNHEALTHY_AFTER); "
                "never serve this in production",
                100 * settings.faults.error_ratio,
                settings.faults.latency_s,
                settings.faults.unhealthy_after_s,
            )
        svc.ready = True
        log.info(
            "ready: model %s version %s (%s, sha256 %s) on %s%s in %.2fs; golden rows checked: %d",
            settings.model_name,
            settings.model_version,
            model.framework,
            sha,
            model.accelerator,
            f" ({model.accelerator_note})" if model.accelerator_note else "",
            time.perf_counter() - t0,
            svc.golden_rows,
        )
        return svc

    def predict(self, x: Matrix) -> Prediction:
        t0 = time.perf_counter()
        pred = self.model.predict(x)
        self.metrics.observe_inference(time.perf_counter() - t0)
        conf = pred.confidence
        if conf is not None:
            self.metrics.observe_confidence(conf)
        return pred

    def metadata(self) -> dict[str, Any]:
        s, m, b = self.settings, self.model, self.settings.build
        return {
            "name": s.model_name,
            "version": s.model_version,
            "framework": m.framework,
            "artifact": {
                "file": s.model_path.name,
                "sha256": self.sha256,
                "verified": s.model_sha256 is not None,
                "loaded_file": getattr(m, "loaded_path", s.model_path).name,
            },
            "input_schema": self.schema.as_json(),
            "classes": list(m.classes) if m.classes is not None else None,
            "outputs": {"predictions": True, "probabilities": self.n_classes is not None},
            "runtime": {"sklearn_fast_path": getattr(m, "fast_path", None)},
            "accelerator": {"requested": s.accelerator, "in_use": m.accelerator, "note": m.accelerator_note},
            "image": {
                "ref": b.image,
                "digest": b.image_digest,
                "git_revision": b.git_revision,
                "build_time": b.build_time,
                "version": b.image_version,
            },
            "self_test": {"golden_rows_passed": self.golden_rows},
            "limits": {"max_body_bytes": s.max_body_bytes, "max_batch_rows": s.max_batch_rows},
            "server": {"name": "modelserver", "version": __version__},
            "faults": {"on": s.faults.on, **s.faults.as_json()},
        }
