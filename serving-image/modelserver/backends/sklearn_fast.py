"""Plain-numpy evaluation of a few common sklearn estimators, used only when verified identical.

sklearn validates its input on every call (type checks, dataframe detection, fitted checks), which
costs far more than the arithmetic of a scaler plus a linear model on a few rows. The server has
already checked the input, so for the estimators below it evaluates the fitted parameters directly
with the same formulas. :func:`compile_fast` returns None for anything else, and the caller compares
the result with sklearn's own on probe rows at startup before using it (see sklearn_model.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]
Step = Callable[[Array], Array]


def _transformer(step: Any) -> Step | None:
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if step is None or step == "passthrough":
        return lambda x: x
    if type(step) is StandardScaler:
        mean = step.mean_ if step.with_mean else None
        scale = step.scale_ if step.with_std else None

        def standard(x: Array) -> Array:
            if mean is not None:
                x = x - mean
            if scale is not None:
                x = x / scale
            return x

        return standard
    if type(step) is MinMaxScaler and not step.clip:
        mult, add = step.scale_, step.min_
        return lambda x: x * mult + add
    return None


def _softmax(z: Array) -> Array:
    z = z - z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def _final(est: Any, proba: bool) -> Step | None:
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    if proba and type(est) is LogisticRegression:
        coef_t, intercept = est.coef_.T, est.intercept_
        if est.coef_.shape[0] == 1:  # binary: sigmoid of one decision value

            def binary(x: Array) -> Array:
                p = 1.0 / (1.0 + np.exp(-(x @ coef_t + intercept)))
                return np.hstack([1.0 - p, p])

            return binary
        return lambda x: _softmax(x @ coef_t + intercept)
    if not proba and type(est) in (LinearRegression, Ridge):
        coef_t, intercept = np.asarray(est.coef_).T, est.intercept_
        return lambda x: x @ coef_t + intercept
    return None


def compile_fast(est: Any, proba: bool) -> Step | None:
    """predict_proba (``proba``) or predict of ``est`` as numpy steps, or None if not supported."""
    from sklearn.pipeline import Pipeline

    steps: list[Any] = [s for _, s in est.steps] if type(est) is Pipeline else [est]
    fns: list[Step] = []
    for step in steps[:-1]:
        fn = _transformer(step)
        if fn is None:
            return None
        fns.append(fn)
    last = _final(steps[-1], proba)
    if last is None:
        return None
    fns.append(last)

    def run(x: Array) -> Array:
        for fn in fns:
            x = fn(x)
        return x

    return run
