"""The model's input schema and the conversion of JSON rows/tensors into a checked float matrix.

Every rejection names the offending field (``instances[3].age``, ``inputs[0].shape``) so a client
can fix its request; nothing that reaches the model can be ragged, non-numeric or non-finite.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import HTTPError, bad_input

Matrix = npt.NDArray[np.float64]

# V2 tensor datatypes a numeric model can take. BOOL and BYTES are refused with a reason.
V2_NUMERIC = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)


def json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is float or t is int  # bool is a subclass of int but not a number here


@dataclass(frozen=True)
class InputSchema:
    features: tuple[str, ...]
    # Values the model's input dtype can hold (float32 models refuse 1e39 rather than see inf).
    max_abs: float = float(np.finfo(np.float64).max)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {name: i for i, name in enumerate(self.features)})

    @property
    def n_features(self) -> int:
        return len(self.features)

    def as_json(self) -> dict[str, Any]:
        return {
            "type": "object",
            "features": [{"name": n, "type": "number"} for n in self.features],
            "row_forms": ["array of numbers in feature order", "object keyed by feature name"],
        }

    # ---- POST /predict -------------------------------------------------------------------
    def rows_to_matrix(self, instances: Any, max_rows: int, path: str = "instances") -> Matrix:
        """``instances`` is a list of rows; each row a list in feature order or an object by name."""
        if not isinstance(instances, list):
            raise bad_input(f"{path} must be an array of rows, got {json_type(instances)}", path)
        if not instances:
            raise bad_input(f"{path} is empty: send at least one row", path)
        if len(instances) > max_rows:
            raise HTTPError(
                413, f"{path} has {len(instances)} rows; the limit is {max_rows} (MAX_BATCH_ROWS)", path
            )
        nf = len(self.features)
        # Fast path: every row a list of nf plain numbers (the common case) in one tight loop.
        fast = True
        for row in instances:
            if type(row) is not list or len(row) != nf:
                fast = False
                break
            for v in row:
                t = type(v)
                if t is not float and t is not int:
                    fast = False
                    break
            if not fast:
                break
        if fast:
            return self._finish(np.array(instances, dtype=np.float64), path)
        rows = [self._row_values(row, i, path) for i, row in enumerate(instances)]
        return self._finish(np.array(rows, dtype=np.float64), path)

    def _row_values(self, row: Any, i: int, path: str) -> list[float | int]:
        nf = len(self.features)
        where = f"{path}[{i}]"
        if isinstance(row, list):
            if len(row) != nf:
                raise bad_input(
                    f"{where} has {len(row)} values; the model takes {nf} ({', '.join(self.features)})", where
                )
            for j, v in enumerate(row):
                if not _is_number(v):
                    raise bad_input(
                        f"{where}[{j}] ({self.features[j]}) must be a number, got {json_type(v)}",
                        f"{where}[{j}]",
                    )
            return row
        if isinstance(row, dict):
            unknown = [k for k in row if k not in self._index]
            if unknown:
                raise bad_input(
                    f"{where} has unknown field(s) {', '.join(map(repr, unknown))}; "
                    f"expected: {', '.join(self.features)}",
                    f"{where}.{unknown[0]}",
                )
            missing = [n for n in self.features if n not in row]
            if missing:
                raise bad_input(
                    f"{where} is missing field(s) {', '.join(map(repr, missing))}", f"{where}.{missing[0]}"
                )
            values = [row[n] for n in self.features]
            for n, v in zip(self.features, values, strict=True):
                if not _is_number(v):
                    raise bad_input(f"{where}.{n} must be a number, got {json_type(v)}", f"{where}.{n}")
            return values
        raise bad_input(
            f"{where} must be an array of {nf} numbers or an object with fields "
            f"{', '.join(self.features)}; got {json_type(row)}",
            where,
        )

    def _finish(self, x: Matrix, path: str) -> Matrix:
        # orjson already refuses NaN/Infinity literals; this catches values that overflow the model's dtype.
        if not np.isfinite(x).all() or (x.size and float(np.abs(x).max()) > self.max_abs):
            bad = np.argwhere(~np.isfinite(x) | (np.abs(x) > self.max_abs))[0]
            i, j = int(bad[0]), int(bad[1])
            where = f"{path}[{i}][{j}]"
            raise bad_input(
                f"{where} ({self.features[j]}) must be a finite number within ±{self.max_abs:.3g}", where
            )
        return x

    # ---- V2 infer ------------------------------------------------------------------------
    def tensor_to_matrix(self, tensor: Any, max_rows: int, path: str = "inputs[0]") -> Matrix:
        if not isinstance(tensor, dict):
            raise bad_input(f"{path} must be an object (a V2 tensor), got {json_type(tensor)}", path)
        for key in ("name", "shape", "datatype", "data"):
            if key not in tensor:
                raise bad_input(f"{path}.{key} is required", f"{path}.{key}")
        if not isinstance(tensor["name"], str):
            raise bad_input(f"{path}.name must be a string", f"{path}.name")
        datatype = tensor["datatype"]
        if not isinstance(datatype, str) or datatype not in V2_NUMERIC:
            raise bad_input(
                f"{path}.datatype {datatype!r} is not supported; use one of {', '.join(sorted(V2_NUMERIC))}",
                f"{path}.datatype",
            )
        shape = tensor["shape"]
        nf = len(self.features)
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(type(d) is int for d in shape)
            or shape[1] != nf
            or shape[0] < 1
        ):
            raise bad_input(
                f"{path}.shape must be [rows, {nf}] with rows >= 1, got {shape!r}", f"{path}.shape"
            )
        n = shape[0]
        if n > max_rows:
            raise HTTPError(
                413, f"{path} has {n} rows; the limit is {max_rows} (MAX_BATCH_ROWS)", f"{path}.shape"
            )
        data = tensor["data"]
        dpath = f"{path}.data"
        if not isinstance(data, list):
            raise bad_input(f"{dpath} must be an array, got {json_type(data)}", dpath)
        # V2 allows the data flat (row-major) or nested to the tensor's shape.
        if len(data) == n * nf and all(_is_number(v) for v in data):
            return self._finish(np.array(data, dtype=np.float64).reshape(n, nf), dpath)
        if len(data) == n:
            rows = [self._row_values(row, i, dpath) for i, row in enumerate(data)]
            return self._finish(np.array(rows, dtype=np.float64), dpath)
        if len(data) == n * nf:
            j = next(k for k, v in enumerate(data) if not _is_number(v))
            raise bad_input(f"{dpath}[{j}] must be a number, got {json_type(data[j])}", f"{dpath}[{j}]")
        raise bad_input(
            f"{dpath} has {len(data)} elements; shape {shape} needs {n * nf} (flat) or {n} rows of {nf}",
            dpath,
        )
