"""deploy/argocd/argocd-cm.yaml is what hack/argocdcm.py makes of the Lua files, in the shape Argo CD
reads: the health check under its key, the actions as a YAML document with discovery.lua and one
definition per action that discovery offers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

import argocdcm

pytestmark = pytest.mark.unit


def test_the_committed_config_map_matches_the_lua_files() -> None:
    assert argocdcm.OUTPUT.read_text() == argocdcm.render(), "run `python hack/argocdcm.py`"


def test_the_config_map_holds_each_script_as_argo_cd_reads_it() -> None:
    data = yaml.safe_load(argocdcm.OUTPUT.read_text())["data"]
    assert set(data) == {
        "resource.customizations.health.modelship.io_ModelDeployment",
        "resource.customizations.actions.modelship.io_ModelDeployment",
    }
    assert data[argocdcm.HEALTH_KEY] == (argocdcm.SOURCE / "health.lua").read_text()
    actions = yaml.safe_load(data[argocdcm.ACTIONS_KEY])
    discovery = actions["discovery.lua"]
    offered = re.findall(r'actions\["([a-z-]+)"\]', discovery)
    assert sorted(offered) == sorted(d["name"] for d in actions["definitions"]) == sorted(argocdcm.ACTIONS)
    for definition in actions["definitions"]:
        script = (argocdcm.SOURCE / "actions" / definition["name"] / "action.lua").read_text()
        assert definition["action.lua"] == script


def test_a_stale_config_map_fails_the_check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stale = tmp_path / "argocd-cm.yaml"
    stale.write_text(argocdcm.render().replace("Suspended", "Healthy"))
    monkeypatch.setattr(argocdcm, "OUTPUT", stale)
    assert argocdcm.main(["--check"]) == 1
