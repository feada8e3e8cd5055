"""Model backends: one per framework, all behind :class:`~modelserver.backends.base.Model`."""

from __future__ import annotations

from ..config import Settings
from .base import Model, Prediction


def load(settings: Settings) -> Model:
    """Load the (already verified) artifact with the backend its framework needs.

    Frameworks are imported here, not at module import, so a server only pays for the one it uses.
    """
    if settings.framework == "sklearn":
        from .sklearn_model import SklearnModel

        return SklearnModel(settings.model_path)
    if settings.framework == "onnx":
        from .onnx_model import OnnxModel

        return OnnxModel(settings.model_path, settings.inference_threads)
    from .tflite_model import TFLiteModel

    return TFLiteModel(
        settings.model_path,
        settings.accelerator,
        settings.model_cpu_sha256,
        settings.inference_threads,
        settings.edgetpu_device,
    )


__all__ = ["Model", "Prediction", "load"]
