"""What a load run saw: `modelserver.load.summary` (the serving image carries the load generator)."""

from modelserver.load.summary import Summary, percentile

__all__ = ["Summary", "percentile"]
