"""The load loop lives in the serving image (`modelserver.load.engine`): one implementation for
the load-test Job and the local world's tools."""

from modelserver.load.engine import (
    FEEDBACK_PATH,
    Load,
    Sample,
    check_loopback,
    due,
    feedback_due,
    feedback_key,
    steady,
    total_requests,
)

__all__ = [
    "FEEDBACK_PATH",
    "Load",
    "Sample",
    "check_loopback",
    "due",
    "feedback_due",
    "feedback_key",
    "steady",
    "total_requests",
]
