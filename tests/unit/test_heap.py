"""The operator's heap (modelship.heap): glibc's arenas capped, and freed memory handed back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelship import heap

pytestmark = pytest.mark.unit


def rss_mb() -> float:
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024


def test_on_glibc_the_arena_cap_takes_effect() -> None:
    assert heap.limit_arenas(), "mallopt(M_ARENA_MAX) refused (or not glibc: this machine is Debian)"


def test_trim_gives_back_what_a_large_parse_left_behind() -> None:
    # A parse of many objects with fields too large for Python's small-object allocator (an
    # annotation, a dict's table), as a LIST of thousands of ModelDeployments is; a few survive
    # among them, so the heap cannot shrink from its top by itself.
    text = json.dumps([{"name": f"md-{i}", "note": "x" * 2000 + str(i)} for i in range(40_000)])
    parsed = json.loads(text)
    survivors = parsed[::1000]
    del parsed, text
    before = rss_mb()
    assert heap.trim(), "malloc_trim released nothing"
    after = rss_mb()
    assert after < before - 20, f"RSS {before:.0f} MB -> {after:.0f} MB"
    assert len(survivors) == 40
