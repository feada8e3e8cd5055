"""`make test`'s runner: every test runs in exactly one of its two sessions, the second spread over
processes, and a failing session fails the run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import testrun

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]


def run_testrun(*args: str) -> subprocess.CompletedProcess[str]:
    """hack/testrun.py with `args`; its sessions load no installed plugin but pytest-timeout (the
    ini's `timeout`) and pytest-xdist (the second session's processes): importing hypothesis and
    schemathesis is most of a session's start, ~5 s of CPU each, and each of these tests starts four."""
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "hack/testrun.py"),
            *args,
            "--disable-plugin-autoload",
            "-p",
            "pytest_timeout",
            "-p",
            "xdist.plugin",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_test_runs_in_exactly_one_session_and_e2e_ones_on_the_real_node() -> None:
    # Selected by marker, not by directory: an e2e test outside tests/e2e (a killed run with a real
    # node, in tests/integration) must not make the other session's cluster take the real node.
    spread = ["-n", str(testrun.OTHERS_WORKERS), "--dist", "loadfile"]
    assert testrun.sessions() == {
        "e2e": ["-m", "e2e or images"],
        "others": ["-m", "not (e2e or images)", *spread],
    }


def test_the_second_session_spreads_its_files_over_processes_and_keeps_each_file_in_one(
    tmp_path: Path,
) -> None:
    # Each test writes its process's pid under its file's name: two files of two tests each.
    for name in ("a", "b"):
        (tmp_path / f"test_{name}.py").write_text(
            "import os, pathlib\n"
            + "".join(
                f"def test_{i}():\n"
                f"    (pathlib.Path({str(tmp_path)!r}) / '{name}{i}').write_text(str(os.getpid()))\n"
                for i in range(2)
            )
        )
    out = run_testrun(str(tmp_path), "-p", "no:cacheprovider")
    assert out.returncode == 0, out.stdout
    pids = {name: {(tmp_path / f"{name}{i}").read_text() for i in range(2)} for name in ("a", "b")}
    assert all(len(p) == 1 for p in pids.values()), f"a file's tests in one process: {pids}"
    assert pids["a"] != pids["b"], "the two files in two processes"


def test_a_failing_session_fails_the_run_and_each_line_names_its_session(tmp_path: Path) -> None:
    # `-k` that selects nothing makes pytest exit 5 in both sessions: the run must not pass. (A test
    # file of its own: collecting one under tests/ would import the cluster harness's conftest.)
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    out = run_testrun(str(tmp_path), "-k", "no_test_has_this_name", "-p", "no:cacheprovider")
    assert out.returncode == 5
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines[-1].startswith("test sessions") and "e2e: exit 5" in lines[-1]
    assert all(line.startswith(("[e2e   ]", "[others]")) for line in lines[:-1])


def test_the_failures_summary_is_pytests_from_its_header_to_its_counts() -> None:
    out = [
        "tests/a.py::test_x PASSED\n",
        "=========================== short test summary info ============================\n",
        "FAILED tests/a.py::test_y - assert 1 == 2\n",
        "ERROR tests/b.py::test_z - RuntimeError: no node\n",
        "==================== 1 failed, 1 passed, 1 error in 3.10s =====================\n",
        "trailing\n",
    ]
    assert testrun.failures(out) == out[1:5]
    assert testrun.failures(out[:1]) == []


def test_a_failed_sessions_failures_are_repeated_after_the_other_sessions_output(tmp_path: Path) -> None:
    failing = tmp_path / "test_fails.py"
    failing.write_text("def test_this_one_fails():\n    assert 1 == 2\n")
    out = run_testrun(str(failing), "-p", "no:cacheprovider")
    assert out.returncode == 1
    lines = out.stdout.splitlines()
    assert lines[-1].startswith("test sessions") and "others: exit 1" in lines[-1]
    # The summary comes twice: where the session printed it, and again just before the last line.
    assert lines[-3].startswith("[others] FAILED") and "test_this_one_fails" in lines[-3]
    assert sum("test_this_one_fails" in line and "FAILED" in line for line in lines) == 2


def test_the_other_session_runs_at_a_lower_priority_than_the_real_nodes(tmp_path: Path) -> None:
    # Each session's test writes the niceness it runs at: the real node's tests must win the CPU.
    for name, marker in (("e2e", "@pytest.mark.e2e\n"), ("others", "")):
        (tmp_path / f"test_{name}.py").write_text(
            f"import os, pathlib, pytest\n{marker}def test_niceness():\n"
            f"    (pathlib.Path({str(tmp_path)!r}) / {name!r}).write_text(str(os.nice(0)))\n"
        )
    out = run_testrun(str(tmp_path), "-p", "no:cacheprovider")
    assert out.returncode == 0, out.stdout
    base = os.nice(0)
    assert int((tmp_path / "e2e").read_text()) == base
    assert int((tmp_path / "others").read_text()) == min(base + testrun.OTHERS_NICENESS, 19)
