"""modelship: safe rollouts of ML model-serving images on Kubernetes."""

__version__ = "0.1.0"
