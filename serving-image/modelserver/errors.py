"""Errors that become HTTP responses with a reason (and, for bad input, the offending field)."""

from __future__ import annotations


class HTTPError(Exception):
    """Answered as ``{"error": reason, "field": field}`` with ``status``; never logged as a crash."""

    def __init__(self, status: int, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.field = field


def bad_input(reason: str, field: str | None = None) -> HTTPError:
    """Well-formed JSON that does not fit the model's input: 422 Unprocessable Content."""
    return HTTPError(422, reason, field)


class StartupError(Exception):
    """The server must not start (bad checksum, unloadable model, failed self-test)."""


class ChecksumError(StartupError):
    """The artifact on disk is not the approved one (its sha256 differs)."""
