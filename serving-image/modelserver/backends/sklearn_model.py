"""scikit-learn estimators (and pipelines) saved with joblib."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import StartupError
from .base import Model, Prediction
from .sklearn_fast import compile_fast


class SklearnModel(Model):
    framework = "sklearn"
    platform = "sklearn"

    def __init__(self, path: Path) -> None:
        import joblib
        import sklearn

        # Inputs are checked finite before they get here; skipping sklearn's own scan is a real saving
        # on small batches.
        sklearn.set_config(assume_finite=True)
        # Estimators fitted on a DataFrame warn on every ndarray call; the schema already maps names.
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        try:
            est: Any = joblib.load(path)
        except Exception as e:  # a pickle can raise anything; report it, never serve
            raise StartupError(f"cannot load {str(path)!r} with joblib: {type(e).__name__}: {e}") from None
        if not callable(getattr(est, "predict", None)):
            raise StartupError(f"{str(path)!r} holds a {type(est).__name__}, which has no predict()")
        self._est = est
        names = getattr(est, "feature_names_in_", None)
        self.feature_names = tuple(str(n) for n in names) if names is not None else None
        n = getattr(est, "n_features_in_", None)
        self.n_features = int(n) if n is not None else None
        classes = getattr(est, "classes_", None)
        self.classes = tuple(classes.tolist()) if classes is not None else None
        self._classes_arr: Any = classes
        # hasattr respects available_if (e.g. SVC(probability=False) has no predict_proba).
        self._proba = classes is not None and hasattr(est, "predict_proba")
        self._fast: Callable[[npt.NDArray[np.float64]], npt.NDArray[np.float64]] | None = None
        self.fast_path = "off"

    def enable_fast_path(self, probes: npt.NDArray[np.float64]) -> str:
        """Use plain-numpy evaluation if this estimator has one and it matches sklearn on ``probes``.

        Returns what happened, for the log and /metadata: "on", "unsupported" or "mismatch: ...".
        """
        fast = compile_fast(self._est, self._proba)
        if fast is None:
            self.fast_path = "unsupported"
            return self.fast_path
        ref = self._est.predict_proba(probes) if self._proba else self._est.predict(probes)
        got = fast(probes)
        ref = np.asarray(ref, dtype=np.float64).reshape(got.shape)
        if not np.allclose(got, ref, rtol=1e-9, atol=1e-12):
            self.fast_path = f"mismatch: max difference {float(np.abs(got - ref).max()):.3g}; using sklearn"
            return self.fast_path
        self._fast = fast
        self.fast_path = "on"
        return self.fast_path

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        fast = self._fast
        if self._proba:
            proba = fast(x) if fast is not None else np.asarray(self._est.predict_proba(x), dtype=np.float64)
            # One model call instead of two: the label is the most probable class, so label and
            # confidence always agree (this equals predict() for every probabilistic sklearn
            # classifier except SVC(probability=True); see README).
            labels: list[Any] = self._classes_arr[proba.argmax(axis=1)].tolist()
            return Prediction(labels, proba)
        values = fast(x) if fast is not None else self._est.predict(x)
        return Prediction(np.asarray(values).tolist(), None)
