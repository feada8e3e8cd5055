"""`modelserver load` (the load-test Job's command) against a stdlib HTTP server: the rows it sends
come from the dataset, the result line says what was answered, and a URL nobody answers fails it."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from modelserver.load import command

from .test_loadgen import _Fake
from .test_loadgen import fake as fake  # the fixture

pytestmark = pytest.mark.unit

DATASET = {"instances": [[1.0, 2.0], [3.0, 4.0]], "labels": ["a", "b"]}


@pytest.fixture
def bundle(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A bundle directory with its holdout.json, as MODEL_PATH names it in the serving image."""
    (tmp_path / "holdout.json").write_text(json.dumps(DATASET))
    yield {"MODEL_PATH": str(tmp_path / "model.joblib")}


def test_a_load_sends_the_bundles_rows_and_writes_its_result(
    fake: str, bundle: dict[str, str], tmp_path: Path
) -> None:
    result = tmp_path / "result"
    base = fake.removesuffix("/predict")
    argv = ["--url", base, "--rate", "50", "--duration", "1", "--requests", "20", "--feedback-ratio", "0.5"]
    code = command.main([*argv, "--result-file", str(result)], bundle)
    report = json.loads(result.read_text())
    assert code == 0, report
    assert (report["requests"], report["answered"], report["errors"]) == (20, 20, 0)
    assert report["codes"] == {"200": 20} and report["feedback_sent"] == 10
    assert _Fake.seen == {"/predict": 20, "/feedback": 10}


def test_a_load_nobody_answers_fails_with_exit_7_and_says_so(bundle: dict[str, str], tmp_path: Path) -> None:
    with socket.socket() as s:  # a port just freed: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = tmp_path / "result"
    argv = ["--url", f"http://127.0.0.1:{port}", "--rate", "20", "--duration", "1", "--requests", "3"]
    code = command.main([*argv, "--result-file", str(result)], bundle)
    report = json.loads(result.read_text())
    assert code == command.EXIT_NO_ANSWER
    assert report["error"] == f"none of 3 requests to http://127.0.0.1:{port} was answered"


def test_a_bundle_without_holdout_rows_is_a_configuration_error(tmp_path: Path) -> None:
    result = tmp_path / "result"
    env = {"MODEL_PATH": str(tmp_path / "model.joblib")}
    code = command.main(["--url", "http://127.0.0.1:1", "--result-file", str(result)], env)
    assert code == 2
    assert "holdout.json" in json.loads(result.read_text())["error"]


@pytest.mark.parametrize(("flag", "value"), [("--rate", "500"), ("--duration", "7200"), ("--requests", "0")])
def test_the_command_refuses_what_the_operator_would_refuse(flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as caught:
        command.main(["--url", "http://127.0.0.1:1", flag, value], {})
    assert caught.value.code == 2
