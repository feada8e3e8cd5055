"""A load generator for the local world: a steady open-loop request rate with feedback labels.

`python -m loadgen --url http://127.0.0.1:PORT/predict` (with PYTHONPATH=hack) or, from Python,
`Load(url, samples, rate, duration)` used as a context manager (runs in the background;
`.summary()` gives live counters). See docs/local-world.md.
"""

from loadgen.engine import Load, Sample, steady
from loadgen.summary import Summary

__all__ = ["Load", "Sample", "Summary", "steady"]
