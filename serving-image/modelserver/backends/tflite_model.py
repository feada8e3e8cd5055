"""TFLite models, on the Coral Edge TPU when asked for and present, otherwise on the CPU.

An ``*_edgetpu.tflite`` model holds an Edge TPU custom op that the CPU interpreter cannot run, so the
CPU fallback needs the uncompiled int8 model beside it (``model_edgetpu.tflite`` -> ``model.tflite``).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .. import artifact
from ..errors import StartupError
from .base import Model, Prediction, labels_from_proba

log = logging.getLogger("modelserver.tflite")

EDGETPU_LIBRARY = "libedgetpu.so.1"


def _interpreter_module() -> Any:
    # ai-edge-litert is the current package; tflite-runtime the older name Coral's docs still use.
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise StartupError("no TFLite runtime installed (ai-edge-litert or tflite-runtime)")


@dataclass(frozen=True)
class Choice:
    path: Path  # the file the interpreter loads
    delegate: Any  # the Edge TPU delegate, or None for CPU
    note: str  # why the CPU is used although coral was asked for ("" otherwise)


def choose(
    path: Path, accelerator: str, cpu_sha256: str | None, library: str = EDGETPU_LIBRARY, device: str = ""
) -> Choice:
    """Decide what to run: the Edge TPU delegate if asked for and loadable, else the CPU model."""
    rt = _interpreter_module()
    twin = artifact.edgetpu_twin(path)
    note = ""
    if accelerator == "coral":
        try:
            options = {"device": device} if device else {}
            delegate = rt.load_delegate(library, options)
            return Choice(path, delegate, "")
        except (OSError, ValueError, RuntimeError) as e:
            # Missing library (no runtime installed) and missing device both land here.
            note = f"Edge TPU delegate unavailable ({library}: {e})"
    if twin is None:
        return Choice(path, None, note)
    if not twin.is_file():
        raise StartupError(
            f"{path.name} is compiled for the Edge TPU and cannot run on the CPU, and its plain int8 twin "
            f"{twin.name} is not beside it; ship both files (see the serving image README)"
        )
    actual = artifact.verify(twin, cpu_sha256, "MODEL_CPU_SHA256")
    if cpu_sha256 is None:
        log.warning("CPU twin %s (sha256 %s) is not verified: MODEL_CPU_SHA256 is unset", twin, actual)
    return Choice(twin, None, note or f"{path.name} is an Edge TPU model and ACCELERATOR=cpu")


class TFLiteModel(Model):
    framework = "tflite"
    platform = "tensorflow_lite"

    def __init__(
        self, path: Path, accelerator: str, cpu_sha256: str | None, threads: int, device: str
    ) -> None:
        choice = choose(path, accelerator, cpu_sha256, device=device)
        rt = _interpreter_module()
        delegates = [choice.delegate] if choice.delegate is not None else None
        try:
            self._interp = rt.Interpreter(
                model_path=str(choice.path), experimental_delegates=delegates, num_threads=threads
            )
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise StartupError(f"cannot load {str(choice.path)!r} with the TFLite interpreter: {e}") from None
        self.loaded_path = choice.path
        self.accelerator = "coral" if choice.delegate is not None else "cpu"
        self.accelerator_note = choice.note
        if choice.note and accelerator == "coral":
            log.warning("ACCELERATOR=coral but running on CPU: %s; serving %s", choice.note, choice.path.name)
        inp = self._interp.get_input_details()
        out = self._interp.get_output_details()
        if len(inp) != 1 or len(inp[0]["shape"]) != 2:
            raise StartupError("modelserver serves TFLite models with one 2-D input (rows, features)")
        self._in = inp[0]
        self._out = out[0]
        self.n_features = int(self._in["shape"][1])
        sig = self._in.get("shape_signature", self._in["shape"])
        self._dynamic_batch = int(sig[0]) == -1
        self._batch = int(self._in["shape"][0])
        in_scale, in_zero = self._in["quantization"]
        self._in_q = (float(in_scale), int(in_zero)) if in_scale else None
        dtype = np.dtype(self._in["dtype"])
        if self._in_q is not None and dtype.kind in "iu":
            info = np.iinfo(dtype)
            self._in_range = (int(info.min), int(info.max))
        out_scale, out_zero = self._out["quantization"]
        self._out_q = (float(out_scale), int(out_zero)) if out_scale else None
        if dtype == np.float32:
            self.max_abs_input = float(np.finfo(np.float32).max)

    def _quantize(self, x: npt.NDArray[np.float64]) -> npt.NDArray[Any]:
        dtype = self._in["dtype"]
        if self._in_q is None:
            return x.astype(dtype)
        scale, zero = self._in_q
        lo, hi = self._in_range
        return np.clip(np.round(x / scale) + zero, lo, hi).astype(dtype)

    def _dequantize(self, y: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        if self._out_q is None:
            return y.astype(np.float64)
        scale, zero = self._out_q
        return (y.astype(np.float64) - zero) * scale

    def _run(self, q: npt.NDArray[Any]) -> npt.NDArray[Any]:
        idx = self._in["index"]
        if self._dynamic_batch:
            if q.shape[0] != self._batch:
                self._interp.resize_tensor_input(idx, list(q.shape))
                self._interp.allocate_tensors()
                self._batch = q.shape[0]
            self._interp.set_tensor(idx, q)
            self._interp.invoke()
            return np.array(self._interp.get_tensor(self._out["index"]))
        # Fixed batch (Edge TPU models are compiled with static shapes): run it in chunks, padding the last.
        b = self._batch
        parts = []
        for start in range(0, q.shape[0], b):
            chunk = q[start : start + b]
            rows = chunk.shape[0]
            if rows < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], b - rows, axis=0)])
            self._interp.set_tensor(idx, chunk)
            self._interp.invoke()
            parts.append(np.array(self._interp.get_tensor(self._out["index"]))[:rows])
        return np.concatenate(parts)

    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        y = self._dequantize(self._run(self._quantize(x))).reshape(x.shape[0], -1)
        if y.shape[1] == 1:  # one value per row: a regression output
            return Prediction(y[:, 0].tolist(), None)
        # Several values per row: class probabilities (the softmax output of a classifier).
        return Prediction(labels_from_proba(y, self.classes), y)
