"""What every model backend provides to the server, whatever the framework."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Prediction:
    labels: list[Any]  # one JSON-ready value per row (a class, or a regression output)
    probabilities: npt.NDArray[np.float64] | None  # (rows, classes) when the model has them

    @property
    def confidence(self) -> npt.NDArray[np.float64] | None:
        return None if self.probabilities is None else self.probabilities.max(axis=1)


class Model(ABC):
    """A loaded, ready model. ``predict`` is called from one thread at a time."""

    framework: str  # sklearn | onnx | tflite
    platform: str  # the V2 metadata "platform"
    accelerator: str = "cpu"  # what actually runs it
    accelerator_note: str = ""  # why it is not what was asked for, if so
    feature_names: tuple[str, ...] | None = None
    n_features: int | None = None
    classes: tuple[Any, ...] | None = None
    max_abs_input: float = float(np.finfo(np.float64).max)

    @abstractmethod
    def predict(self, x: npt.NDArray[np.float64]) -> Prediction:
        """``x`` is a finite (rows, features) matrix already checked against the schema."""

    def with_classes(self, classes: tuple[Any, ...]) -> None:
        """Class names from the bundle's schema.json, for models whose outputs are indices."""
        self.classes = classes


def labels_from_proba(proba: npt.NDArray[np.float64], classes: tuple[Any, ...] | None) -> list[Any]:
    idx = proba.argmax(axis=1)
    if classes is None or len(classes) != proba.shape[1]:
        labels: list[Any] = idx.tolist()
        return labels
    return [classes[i] for i in idx.tolist()]
