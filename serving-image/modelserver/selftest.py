"""Golden inputs shipped with the model, run before the server reports ready (warm-up and self-test).

``golden.json``::

    {"instances": [[...], ...], "predictions": [...],
     "probabilities": [[...], ...],   # optional
     "atol": 1e-6}                      # optional tolerance for probabilities and numeric outputs
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .backends import Model
from .errors import HTTPError, StartupError
from .schema import InputSchema


def _close(a: Any, b: Any, atol: float) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= atol
    return bool(a == b)


def run_golden(model: Model, schema: InputSchema, golden: Any, source: str) -> int:
    """Run the golden cases; return how many rows passed, raise StartupError on any difference."""
    if not isinstance(golden, dict) or "instances" not in golden or "predictions" not in golden:
        raise StartupError(f"{source} must be an object with 'instances' and 'predictions'")
    try:
        x = schema.rows_to_matrix(golden["instances"], max_rows=1 << 30, path=f"{source}: instances")
    except HTTPError as e:
        raise StartupError(e.reason) from None
    expected = golden["predictions"]
    atol = float(golden.get("atol", 1e-6))
    if not isinstance(expected, list) or len(expected) != len(x):
        raise StartupError(f"{source}: 'predictions' must have one entry per instance ({len(x)})")
    got = model.predict(x)
    for i, (want, have) in enumerate(zip(expected, got.labels, strict=True)):
        if not _close(want, have, atol):
            raise StartupError(
                f"golden self-test failed: {source} row {i} expected {want!r}, model says {have!r}"
            )
    want_p = golden.get("probabilities")
    if want_p is not None:
        if got.probabilities is None:
            raise StartupError(f"{source} has probabilities but the model produces none")
        want_arr = np.asarray(want_p, dtype=np.float64)
        if want_arr.shape != got.probabilities.shape:
            raise StartupError(
                f"{source}: probabilities shape {want_arr.shape} != model's {got.probabilities.shape}"
            )
        diff = np.abs(want_arr - got.probabilities)
        if float(diff.max()) > atol:
            i = int(np.argmax(diff.max(axis=1)))
            raise StartupError(
                f"golden self-test failed: {source} row {i} probabilities differ by {float(diff.max()):.3g} "
                f"(atol {atol:g})"
            )
    return len(x)
