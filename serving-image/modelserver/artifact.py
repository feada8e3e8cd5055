"""The model bundle on disk: the artifact, its checksum, and the optional files beside it.

A bundle is one directory holding the model file and, optionally:
``schema.json`` (feature names, class names), ``examples.json`` (requests shown by GET /predict)
and ``golden.json`` (inputs with expected outputs, run at startup as warm-up and self-test).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .errors import ChecksumError, StartupError

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify(path: Path, expected: str | None, variable: str) -> str:
    """Return the file's sha256; raise StartupError if it differs from ``expected``.

    ``expected`` None means verification was explicitly waived (MODEL_ALLOW_UNVERIFIED).
    """
    if not path.is_file():
        raise StartupError(f"model file {str(path)!r} does not exist or is not a file")
    actual = sha256_of(path)
    if expected is not None and actual != expected:
        raise ChecksumError(
            f"checksum mismatch for {str(path)!r}: {variable}={expected} but the file's sha256 is {actual}; "
            "refusing to serve a model that is not the one that was approved"
        )
    return actual


def read_json(path: Path) -> Any | None:
    """Parse an optional bundle file; None if absent, StartupError if present but broken."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StartupError(f"{str(path)!r} is not valid JSON: {e}") from None


def edgetpu_twin(path: Path) -> Path | None:
    """The plain int8 model that must sit beside an ``*_edgetpu.tflite`` for CPU fallback."""
    if not path.name.endswith("_edgetpu.tflite"):
        return None
    return path.with_name(path.name.removesuffix("_edgetpu.tflite") + ".tflite")
