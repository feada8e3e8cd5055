"""`make test`'s runner: every test runs in exactly one of its two sessions, and a failing
session fails the run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import testrun

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def test_every_test_runs_in_exactly_one_session_and_e2e_ones_on_the_real_node() -> None:
    # Selected by marker, not by directory: an e2e test outside tests/e2e (a killed run with a real
    # node, in tests/integration) must not make the other session's cluster take the real node.
    assert testrun.sessions() == {"e2e": ["-m", "e2e or images"], "others": ["-m", "not (e2e or images)"]}


def test_a_failing_session_fails_the_run_and_each_line_names_its_session() -> None:
    # `-k` that selects nothing makes pytest exit 5 in both sessions: the run must not pass.
    out = subprocess.run(
        [
            sys.executable,
            str(REPO / "hack/testrun.py"),
            "tests/unit/test_testrun.py",
            "-k",
            "no_test_has_this_name",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 5
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("test sessions") and "e2e: exit 5" in lines[-1]
    assert all(line.startswith(("[e2e   ]", "[others]")) for line in lines[:-1])
