"""The load generator: a steady open-loop request rate, bounded in requests and time, with
feedback labels. One implementation for `modelserver load` (the load-test Job modelship runs
against a candidate's Service) and for the local world's tools (`hack/loadgen`, the tests and
the bench import it from here).

From Python: `Load(url, samples, rate, duration)` as a context manager (it runs in the background;
`.summary()` gives live counters).
"""

from .engine import Load, Sample, steady
from .summary import Summary

__all__ = ["Load", "Sample", "Summary", "steady"]
