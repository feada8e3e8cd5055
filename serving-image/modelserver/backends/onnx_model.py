"""ONNX models run by onnxruntime (for example sklearn models converted with skl2onnx)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import StartupError
from .base import Model, Prediction

_ORT_FLOAT: dict[str, type[np.floating[Any]]] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}


class OnnxModel(Model):
    framework = "onnx"
    platform = "onnxruntime_onnx"

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self._sess = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise StartupError(f"cannot load {str(path)!r} with onnxruntime: {e}") from None
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            raise StartupError(f"the ONNX model has {len(inputs)} inputs; modelserver serves one 2-D input")
        inp = inputs[0]
        if inp.type not in _ORT_FLOAT:
            raise StartupError(f"the ONNX input {inp.name!r} has type {inp.type}; a float tensor is needed")
        self._input = inp.name
        self._dtype = _ORT_FLOAT[inp.type]
        self.max_abs_input = float(np.finfo(self._dtype).max)
        if len(inp.shape) == 2 and isinstance(inp.shape[1], int):
            self.n_features = inp.shape[1]
        outs = self._sess.get_outputs()
        self._outputs = [o.name for o in outs]
        # skl2onnx classifiers: (label, probabilities). Anything else: the first output is the prediction.
        self._classifier = len(outs) >= 2 and outs[0].type in ("tensor(int64)", "tensor(string)")

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        names = self._outputs[:2] if self._classifier else self._outputs[:1]
        out = self._sess.run(names, {self._input: x.astype(self._dtype)})
        if not self._classifier:
            values = np.asarray(out[0], dtype=np.float64)
            if values.ndim == 2 and values.shape[1] == 1:  # (rows, 1) regressors answer one value per row
                values = values[:, 0]
            return Prediction(values.tolist(), None)
        labels: list[Any] = np.asarray(out[0]).reshape(-1).tolist()
        probs: Any = out[1]
        if isinstance(probs, list):  # ZipMap output: one {class: probability} dict per row
            keys = list(probs[0].keys())
            if self.classes is None:
                self.classes = tuple(keys)
            proba = np.array([[row[k] for k in keys] for row in probs], dtype=np.float64)
        else:
            proba = np.asarray(probs, dtype=np.float64)
        return Prediction(labels, proba)
