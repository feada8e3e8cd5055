"""The import contract (.importlinter) keeps the functional core free of I/O: it passes on the
tree as it is and fails when a core module imports the shell, the clock or the network."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(package_root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / ".importlinter"), "--no-cache"],
        cwd=package_root,
        env={"PYTHONPATH": str(package_root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_tree_keeps_the_contract() -> None:
    done = lint(ROOT / "operator")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize(
    "line",
    [
        "from modelship.kube import client",  # the shell
        "import time",  # the clock
        "import kubernetes",  # the cluster
        "from modelship.analysis import prometheus",  # Prometheus I/O
    ],
)
def test_a_core_module_importing_io_breaks_it(tmp_path: Path, line: str) -> None:
    shutil.copytree(
        ROOT / "operator" / "modelship", tmp_path / "modelship", ignore=shutil.ignore_patterns("__pycache__")
    )
    gates = tmp_path / "modelship" / "core" / "gates.py"
    gates.write_text(gates.read_text() + f"\n{line}  # noqa\n")
    done = lint(tmp_path)
    assert done.returncode != 0
    assert "BROKEN" in done.stdout and "modelship.core.gates" in done.stdout, done.stdout
