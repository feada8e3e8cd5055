"""The inputs a local run sends: the demo holdout rows by default, or a JSON file of examples
(`modelserver.load.mix` reads the file; the demo rows come from the local world)."""

from __future__ import annotations

from modelserver.load.engine import Sample
from modelserver.load.mix import MAX_WEIGHT, MixError, load_file, parse, row_samples

__all__ = ["MAX_WEIGHT", "MixError", "holdout_samples", "load_file", "parse", "row_samples"]


def holdout_samples() -> list[Sample]:
    """One sample per demo holdout row (never trained on), with its true label."""
    from localworld.demomodels import holdout

    x, y = holdout()
    samples: list[Sample] = row_samples([row.tolist() for row in x], [str(label) for label in y])
    return samples
