"""The build cache: one scratch directory per build, renamed into place; stale caches pruned."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from devcluster import cache


def _fake_go(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache.shutil, "which", lambda name: f"/usr/bin/{name}")


def test_build_once_fills_a_scratch_dir_and_renames_it_with_a_manifest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_go(monkeypatch)
    out = tmp_path / "tool-v1"
    seen: list[Path] = []

    def make(scratch: Path) -> dict[str, Any]:
        seen.append(scratch)
        assert scratch != out and scratch.parent == out.parent and ".partial-" in scratch.name
        (scratch / "bin").mkdir()
        (scratch / "bin" / "tool").write_text("x")
        return {"version": "v1"}

    assert cache.build_once(out, lambda d: (d / cache.MANIFEST).is_file(), make, "tool") == out
    assert (out / "bin" / "tool").read_text() == "x"
    manifest = json.loads((out / cache.MANIFEST).read_text())
    assert manifest["version"] == "v1" and isinstance(manifest["build_seconds"], int)
    assert (out / cache.USED).exists() and not seen[0].exists()


def test_build_once_skips_a_built_output_and_only_marks_it_used(tmp_path: Path) -> None:
    out = tmp_path / "tool-v1"
    out.mkdir()

    def make(scratch: Path) -> dict[str, Any]:
        raise AssertionError("a built output must not be rebuilt")

    assert cache.build_once(out, lambda d: True, make, "tool") == out
    assert (out / cache.USED).exists()


def test_a_failed_build_leaves_neither_output_nor_scratch(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_go(monkeypatch)
    out = tmp_path / "tool-v1"

    def make(scratch: Path) -> dict[str, Any]:
        (scratch / "half").write_text("")
        raise RuntimeError("go build failed")

    with pytest.raises(RuntimeError, match="go build failed"):
        cache.build_once(out, lambda d: False, make, "tool")
    assert list(tmp_path.iterdir()) == []


def test_without_go_the_error_names_what_could_not_be_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(cache.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match=r"required to build Traefik \(go not on PATH\)"):
        cache.build_once(tmp_path / "t", lambda d: False, lambda d: {}, "Traefik")


def test_prune_removes_caches_unused_for_two_weeks_and_killed_builds_but_never_the_current(
    tmp_path: Path,
) -> None:
    day, now = 86400.0, 1_900_000_000.0

    def made(name: str, used_days_ago: float | None, built_days_ago: float = 100) -> Path:
        d = tmp_path / name
        d.mkdir()
        (d / "manifest.json").write_text("{}")
        os.utime(d / "manifest.json", (now - built_days_ago * day,) * 2)
        if used_days_ago is not None:
            (d / cache.USED).touch()
            os.utime(d / cache.USED, (now - used_days_ago * day,) * 2)
        return d

    current = made("k8sv1.37.2-new", used_days_ago=30)  # the one in use is never removed
    recent = made("k8sv1.36.0-branch", used_days_ago=3)  # another checkout still uses it
    stale = made("k8sv1.35.0-old", used_days_ago=15)
    never_marked = made("k8sv1.34.0-older", used_days_ago=None)  # built before markers existed
    fresh_unmarked = made("k8sv1.34.1-x", used_days_ago=None, built_days_ago=1)
    killed = tmp_path / "k8sv1.37.2-new.partial-abc"
    killed.mkdir()
    os.utime(killed, (now - 2 * day,) * 2)
    running = tmp_path / "k8sv1.37.2-new.partial-def"  # a build under way in another shell
    running.mkdir()
    os.utime(running, (now - 600,) * 2)
    (tmp_path / "not-a-dir").write_text("")
    removed = cache.prune(tmp_path, keep=current, now=now)
    assert sorted(removed) == sorted([stale, never_marked, killed])
    assert all(d.exists() for d in (current, recent, fresh_unmarked, running))
    assert not any(d.exists() for d in removed)
