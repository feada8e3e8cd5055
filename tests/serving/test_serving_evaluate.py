"""`modelserver evaluate`: a real process scoring real model servers (and a bundle) over HTTP."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from modelserver import evaluate, sample_models
from modelserver.cli import EXIT_CONFIG
from modelserver.sample_models import Bundle

from .serving_helpers import REPO, Server, free_port

pytestmark = pytest.mark.unit


def _run(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    """(exit code, the result line parsed, stderr) of `python -m modelserver evaluate ...`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MODEL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "modelserver", "evaluate", *args],
        env=base | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr
    return proc.returncode, json.loads(lines[0]), proc.stderr


def _holdout(n: int = 200, shuffle: bool = False) -> dict[str, Any]:
    """Labelled rows of the sample models' data (make_classification draws another problem for
    another `n`, so these are rows they were trained on: the score is still the model's own)."""
    x, y = (a[:n] for a in sample_models.dataset(seed=0))
    labels = np.random.default_rng(3).permutation(y) if shuffle else y
    return {"instances": x.tolist(), "labels": labels.tolist(), "metric": "accuracy"}


def _expected(bundle: Bundle, data: dict[str, Any]) -> float:
    import joblib

    model = joblib.load(bundle.model_path)
    return float((model.predict(np.array(data["instances"])) == np.array(data["labels"])).mean())


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    path = tmp_path / "holdout.json"
    path.write_text(json.dumps(_holdout()))
    return path


def test_scores_a_running_server_on_a_dataset_file(
    sk_server: Server, sklearn_bundle: Bundle, dataset: Path, tmp_path: Path
) -> None:
    result_file = tmp_path / "termination-log"
    code, result, _ = _run(
        "--url", sk_server.url, "--dataset", str(dataset), "--batch", "50", "--result-file", str(result_file)
    )
    assert code == 0
    want = _expected(sklearn_bundle, json.loads(dataset.read_text()))
    assert result == {"metric": "accuracy", "value": want, "examples": 200, "requests": 4}
    assert 0.6 < want < 1.0  # a real score, not a constant
    # The termination message holds the very same one line.
    assert json.loads(result_file.read_text()) == result
    assert result_file.read_text().count("\n") == 1


def test_a_wrong_model_scores_low(sk_server: Server, tmp_path: Path) -> None:
    shuffled = tmp_path / "shuffled.json"
    shuffled.write_text(json.dumps(_holdout(shuffle=True)))
    code, result, _ = _run("--url", sk_server.url, "--dataset", str(shuffled))
    assert code == 0
    assert result["value"] < 0.5


def test_compares_with_the_stable_server_on_the_same_data(
    sk_server: Server, onnx_server: Server, onnx_bundle: Bundle, dataset: Path
) -> None:
    code, result, _ = _run(
        "--url", sk_server.url, "--compare-url", onnx_server.url, "--dataset", str(dataset)
    )
    assert code == 0
    # The ONNX model is the sklearn one converted: the stable score is its own, on the same rows.
    assert result["examples"] == 200
    assert abs(result["stable_value"] - result["value"]) <= 0.02
    assert set(result) == {"metric", "value", "examples", "requests", "stable_value"}


def test_scores_the_bundle_in_process_on_its_own_holdout(
    sklearn_bundle: Bundle, sk_server: Server, dataset: Path, tmp_path: Path
) -> None:
    bundle_dir = tmp_path / "bundle"
    shutil.copytree(sklearn_bundle.model_path.parent, bundle_dir)
    shutil.copy(dataset, bundle_dir / evaluate.HOLDOUT)
    model = bundle_dir / sklearn_bundle.model_path.name
    # The bundle's holdout.json is the default dataset.
    code, result, _ = _run("--bundle", str(model), env={"MODEL_SHA256": sklearn_bundle.sha256})
    assert code == 0
    _, served, _ = _run("--url", sk_server.url, "--dataset", str(dataset))
    assert result == {**served, "requests": 0}  # nothing was sent over HTTP


def test_a_bundle_with_the_wrong_checksum_is_refused(sklearn_bundle: Bundle, dataset: Path) -> None:
    code, result, err = _run(
        "--bundle", str(sklearn_bundle.model_path), "--dataset", str(dataset), env={"MODEL_SHA256": "0" * 64}
    )
    assert code == EXIT_CONFIG
    assert "checksum" in result["error"].lower() and "--bundle" in result["error"]
    assert "modelserver evaluate:" in err


def test_a_server_that_fails_is_a_scoring_error(tmp_path: Path, dataset: Path) -> None:
    nobody = f"http://127.0.0.1:{free_port()}"
    result_file = tmp_path / "termination-log"
    code, result, _ = _run("--url", nobody, "--dataset", str(dataset), "--result-file", str(result_file))
    assert code == evaluate.EXIT_SCORING
    assert result["error"].startswith(f"POST {nobody}/predict failed")
    assert json.loads(result_file.read_text()) == result


def test_a_server_that_refuses_the_rows_is_a_scoring_error(sk_server: Server, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"instances": [[1, 2]], "labels": ["low"]}))  # 2 features, not 4
    code, result, _ = _run("--url", sk_server.url, "--dataset", str(bad))
    assert code == evaluate.EXIT_SCORING
    assert "answered 422" in result["error"] and "the model takes 4" in result["error"]


@pytest.mark.parametrize(
    ("doc", "says"),
    [
        ([], "must be a JSON object"),
        ({"instances": [], "labels": []}, "instances must be a non-empty array"),
        ({"instances": [[1]], "labels": ["a", "b"]}, "labels must be an array with one label per row (1)"),
        ({"instances": [[1]], "labels": ["a"], "metric": "f1"}, "metric must be one of accuracy, mae, rmse"),
        ({"instances": [[1]], "labels": ["a"], "weights": [1]}, "'weights' is not a known field"),
    ],
)
def test_a_bad_dataset_is_refused_naming_the_field(doc: Any, says: str) -> None:
    with pytest.raises(evaluate.DatasetError) as err:
        evaluate.parse_dataset(doc, "data.json")
    assert says in str(err.value) and str(err.value).startswith("data.json")


def test_a_bad_dataset_file_exits_2_naming_it(sk_server: Server, tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    code, result, _ = _run("--url", sk_server.url, "--dataset", str(missing))
    assert code == EXIT_CONFIG
    assert result == {"error": f"dataset: cannot read dataset {missing}: No such file or directory"}


def test_a_uri_dataset_needs_its_checksum(sk_server: Server) -> None:
    code, result, _ = _run("--url", sk_server.url, "--dataset", "https://data.example/holdout.json?sig=x")
    assert code == EXIT_CONFIG
    assert "--dataset-sha256 is required" in result["error"] and "sig=x" not in result["error"]


def test_the_bundle_holdout_needs_a_bundle(sk_server: Server) -> None:
    code, result, _ = _run("--url", sk_server.url)
    assert code == EXIT_CONFIG
    assert "--dataset bundle needs the bundle" in result["error"]


def test_regression_metrics() -> None:
    assert evaluate.score("mae", [1.0, 2.0, 4.0], [1, 3, 2]) == pytest.approx(1.0)
    assert evaluate.score("rmse", [1.0, 2.0, 4.0], [1, 3, 2]) == pytest.approx((5 / 3) ** 0.5)
    assert evaluate.score("accuracy", ["1", 2, "b"], [1, 2.0, "a"]) == pytest.approx(2 / 3)
    with pytest.raises(evaluate.DatasetError, match="mae needs numeric"):
        evaluate.score("mae", ["low"], ["high"])
