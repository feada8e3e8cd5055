"""The pure parts of hack/localworld/demoimages.py: Containerfile text, keys, names, the bundle cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from localworld import demoimages, demomodels
from localworld.demoimages import (
    ALL,
    bundle_source,
    containerfile,
    content_key,
    fault_env,
    file_digests,
    image_ref,
    source_key,
)

pytestmark = pytest.mark.unit

SERVING = "localhost/modelserver:0123456789abcdef"
FILES = {"model.joblib": "a" * 64, "schema.json": "b" * 64}


def test_containerfile_is_one_copy_on_the_serving_image_then_env_and_label() -> None:
    text = containerfile(SERVING, "v3-slow", {"MODELSERVER_FAULT_LATENCY": "0.5"})
    assert text.splitlines()[1:] == [
        f"FROM {SERVING}",
        "COPY --chown=10001:10001 bundle/ /models/",
        'ENV MODELSERVER_FAULT_LATENCY="0.5"',
        'LABEL io.modelship.model.version="v3-slow"',
    ]
    assert text.startswith("# ") and text.endswith("\n")


def test_containerfile_without_env_has_no_env_line_and_sorts_and_quotes_env() -> None:
    assert "ENV" not in containerfile(SERVING, "v1", {})
    text = containerfile(SERVING, "x", {"B": 'say "hi"', "A": "1 2"})
    assert [line for line in text.splitlines() if line.startswith("ENV")] == [
        'ENV A="1 2"',
        'ENV B="say \\"hi\\""',
    ]


def test_containerfile_refuses_a_bad_env_name() -> None:
    with pytest.raises(ValueError, match="environment variable"):
        containerfile(SERVING, "v1", {"A B": "1"})


def test_content_key_is_stable_and_changes_with_each_input() -> None:
    env = {"MODELSERVER_FAULT_ERROR_RATIO": "0.3"}
    key = content_key("id1", "v1", FILES, env)
    assert len(key) == 16 and int(key, 16) >= 0
    assert content_key("id1", "v1", dict(reversed(FILES.items())), env) == key  # order does not matter
    others = {
        content_key("id2", "v1", FILES, env),
        content_key("id1", "v2", FILES, env),
        content_key("id1", "v1", {**FILES, "model.joblib": "c" * 64}, env),
        content_key("id1", "v1", {**FILES, "golden.json": "d" * 64}, env),
        content_key("id1", "v1", FILES, {}),
        content_key("id1", "v1", FILES, {"MODELSERVER_FAULT_ERROR_RATIO": "0.4"}),
    }
    assert key not in others and len(others) == 6


def test_image_ref_names_version_and_key() -> None:
    assert image_ref("v3-bad-errors", "0123456789abcdef") == (
        "localhost/modelship/demo-model:v3-bad-errors-0123456789abcdef"
    )
    with pytest.raises(ValueError, match="tag"):
        image_ref("v1/evil", "0123456789abcdef")


def test_source_key_changes_with_the_code_and_the_libraries() -> None:
    key = source_key([b"demomodels", b"sample_models"], {"scikit-learn": "1.9.1"})
    assert key == source_key([b"demomodels", b"sample_models"], {"scikit-learn": "1.9.1"})
    assert key != source_key([b"demomodels 2", b"sample_models"], {"scikit-learn": "1.9.1"})
    assert key != source_key([b"demomodels", b"sample_models"], {"scikit-learn": "1.9.2"})
    # Each source hashed on its own: moving bytes between files is a change.
    assert source_key([b"ab", b"c"], {}) != source_key([b"a", b"bc"], {})


def test_names_bundles_and_faults() -> None:
    assert ("sklearn", *demomodels.VERSIONS) == ALL
    assert [bundle_source(n) for n in ("sklearn", *demomodels.TRAINED)] == ["sklearn", *demomodels.TRAINED]
    for name, (base, env) in demomodels.FAULTY.items():
        assert (bundle_source(name), fault_env(name)) == (base, env)
    assert bundle_source("v3-bad-errors") == bundle_source("v3-slow") == "v2"
    assert fault_env("v1") == fault_env("sklearn") == {}
    assert fault_env("v3-bad-errors") == {"MODELSERVER_FAULT_ERROR_RATIO": "0.3"}
    assert fault_env("v3-slow") == {"MODELSERVER_FAULT_LATENCY": "0.5"}
    for bad in (bundle_source, fault_env):
        with pytest.raises(ValueError, match="unknown demo model 'v9'"):
            bad("v9")


def test_build_model_images_refuses_unknown_names_before_doing_anything() -> None:
    with pytest.raises(ValueError, match="unknown demo model"):
        demoimages.build_model_images("localhost/nothing:here", ["v1", "nope"])


def test_file_digests_are_relative_paths_with_sha256(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x").write_bytes(b"abc")
    assert file_digests(tmp_path) == {
        "model.joblib": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "sub/x": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    }


def test_bundles_are_trained_once_into_the_cache_and_shared_by_the_faulty_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELSHIP_CACHE", str(tmp_path))
    trained: list[str] = []

    def fake_bundle(version: str, d: Path) -> None:
        trained.append(version)
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.joblib").write_text(version)

    monkeypatch.setattr(demomodels, "bundle", fake_bundle)
    v2 = demoimages.bundle_dir("v2")
    assert v2 == tmp_path / "images" / "demo-bundles" / demoimages.bundles_key() / "v2"
    assert (v2 / "model.joblib").read_text() == "v2"
    assert demoimages.bundle_dir("v3-slow") == demoimages.bundle_dir("v3-bad-errors") == v2
    assert trained == ["v2"]
    # Nothing half-written is left beside it.
    assert [p.name for p in v2.parent.iterdir()] == ["v2"]
