"""The krew manifest (deploy/krew, not published): its shape, and that it installs the version
pyproject.toml builds."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
KREW = REPO / "deploy" / "krew"


def test_the_krew_manifest_installs_the_shim_of_the_version_pyproject_builds() -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    doc = yaml.safe_load((KREW / "modelship.yaml").read_text())
    assert (doc["apiVersion"], doc["kind"]) == ("krew.googlecontainertools.github.com/v1alpha2", "Plugin")
    assert doc["metadata"]["name"] == "modelship" and doc["spec"]["version"] == f"v{version}"
    assert "pipx" in doc["spec"]["caveats"]
    for platform in doc["spec"]["platforms"]:
        assert platform["bin"] == "kubectl-modelship"
        assert re.fullmatch(r"[0-9a-f]{64}", platform["sha256"])
        assert f"v{version}" in platform["uri"]
        shipped = {f["from"] for f in platform["files"]}
        assert all((KREW / name).is_file() or (REPO / name).is_file() for name in shipped), shipped
    shim = (KREW / "kubectl-modelship").read_text()
    assert f"VERSION={version}\n" in shim and 'kubectl-modelship "$@"' in shim


def test_the_shim_is_valid_sh() -> None:
    done = subprocess.run(["sh", "-n", str(KREW / "kubectl-modelship")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
