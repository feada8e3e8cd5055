"""A load generator for the local world: a steady open-loop request rate with feedback labels.

`python -m loadgen --url http://127.0.0.1:PORT/predict` (with PYTHONPATH=hack) or, from Python,
`Load(url, samples, rate, duration)` used as a context manager (runs in the background;
`.summary()` gives live counters). See docs/local-world.md. The loop itself is the serving
image's (`modelserver.load`); this package adds the loopback CLI and the demo's holdout rows.
"""

from modelserver.load import Load, Sample, Summary, steady

__all__ = ["Load", "Sample", "Summary", "steady"]
