"""The operator process's heap, kept near what it holds.

A pass or a watch event parses JSON into many small objects and frees them soon after; with glibc's
default of one malloc arena per thread (up to eight per core), each of the operator's threads
keeps its own arenas, and the freed memory stays in the process (at 300 ModelDeployments, before
the work queue bounded the events held at once, the steady RSS was 247 MB without these two calls
and 217 MB with them). So:
- `limit_arenas` (at start, before threads) caps the arenas, so the threads share their free
  memory;
- `trim` (after each resync pass) hands the free pages at the top of the heap and in whole free
  chunks back to the kernel.
Both are glibc's (`mallopt`, `malloc_trim`); on another C library they do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util

ARENAS = 2  # shared by every thread
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.mallopt, libc.malloc_trim  # noqa: B018 - glibc has both; musl has no malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return libc


_LIBC = _libc()


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas; whether it took effect."""
    return _LIBC is not None and _LIBC.mallopt(_M_ARENA_MAX, arenas) == 1


def trim() -> bool:
    """Give the heap's free memory back to the kernel; whether any was."""
    return _LIBC is not None and _LIBC.malloc_trim(0) == 1
