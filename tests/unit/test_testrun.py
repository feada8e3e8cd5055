"""`make test`'s runner: every test directory runs, in exactly one of its two sessions, and a
failing session fails the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import testrun

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_every_test_directory_runs_in_exactly_one_session() -> None:
    found = {f"tests/{d.name}" for d in (REPO / "tests").iterdir() if d.is_dir() and d.name != "__pycache__"}
    paths = [p for ps in testrun.sessions().values() for p in ps]
    assert sorted(paths) == sorted(found)
    assert testrun.sessions()["e2e"] == ["tests/e2e"]  # the real node's tests are never split


def test_a_failing_session_fails_the_run_and_each_line_names_its_session() -> None:
    # `-k` that selects nothing makes pytest exit 5 in both sessions: the run must not pass.
    out = subprocess.run(
        [sys.executable, str(REPO / "hack/testrun.py"), "-m", "unit", "-k", "no_test_has_this_name"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 5
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("test sessions") and "e2e: exit 5" in lines[-1]
    assert all(line.startswith(("[e2e   ]", "[others]")) for line in lines[:-1])
