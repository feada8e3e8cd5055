"""Startup gates: the checksum, the golden self-test, bundle files; clean exit on SIGTERM."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from modelserver.cli import EXIT_CHECKSUM, EXIT_CONFIG, EXIT_MODEL
from modelserver.sample_models import Bundle

from .serving_helpers import Server, free_port, run_to_exit

pytestmark = pytest.mark.unit


def test_checksum_mismatch_refuses_to_start_and_never_listens(sklearn_bundle: Bundle, tmp_path: Path) -> None:
    port = free_port()
    env = sklearn_bundle.env() | {"MODEL_SHA256": "0" * 64, "PORT": str(port)}
    server = Server(env, port=port)
    with pytest.raises(RuntimeError, match="exited with 3"):
        server.start(tmp_path / "log")
    out = server.output()
    assert "checksum mismatch" in out
    assert sklearn_bundle.sha256 in out  # says what the file actually is
    assert "refusing to serve" in out
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", port))


def test_checksum_of_a_tampered_artifact(sklearn_bundle: Bundle, copy_bundle) -> None:  # type: ignore[no-untyped-def]
    model = copy_bundle(sklearn_bundle)
    with model.open("ab") as f:
        f.write(b"\0")
    r = run_to_exit({"MODEL_PATH": str(model), "MODEL_SHA256": sklearn_bundle.sha256})
    assert r.code == EXIT_CHECKSUM, r.text
    assert "checksum mismatch" in r.text


def test_sha256_is_required_unless_waived(sklearn_bundle: Bundle) -> None:
    r = run_to_exit({"MODEL_PATH": str(sklearn_bundle.model_path)})
    assert r.code == EXIT_CONFIG
    assert "MODEL_SHA256 is required" in r.text


def test_waived_checksum_is_reported_as_unverified(sklearn_bundle: Bundle) -> None:
    r = run_to_exit(
        {"MODEL_PATH": str(sklearn_bundle.model_path), "MODEL_ALLOW_UNVERIFIED": "true"}, ["--check"]
    )
    assert r.code == 0, r.text
    assert "UNVERIFIED" in r.text
    meta = json.loads(r.stdout)
    assert meta["artifact"]["verified"] is False
    assert meta["artifact"]["sha256"] == sklearn_bundle.sha256


def test_check_mode_verifies_loads_self_tests_and_exits(sklearn_bundle: Bundle) -> None:
    r = run_to_exit(sklearn_bundle.env(), ["--check"])
    assert r.code == 0, r.text
    meta = json.loads(r.stdout)
    assert meta["artifact"]["verified"] is True
    assert meta["self_test"]["golden_rows_passed"] == 8


def test_failing_golden_self_test_refuses_to_start(sklearn_bundle: Bundle, copy_bundle) -> None:  # type: ignore[no-untyped-def]
    model = copy_bundle(sklearn_bundle)
    golden_path = model.parent / "golden.json"
    golden = json.loads(golden_path.read_text())
    golden["predictions"][2] = "no-such-class"
    golden_path.write_text(json.dumps(golden))
    r = run_to_exit({"MODEL_PATH": str(model), "MODEL_SHA256": sklearn_bundle.sha256})
    assert r.code == EXIT_MODEL, r.text
    assert "golden self-test failed" in r.text and "row 2" in r.text


def test_golden_probabilities_are_checked_too(sklearn_bundle: Bundle, copy_bundle) -> None:  # type: ignore[no-untyped-def]
    model = copy_bundle(sklearn_bundle)
    golden_path = model.parent / "golden.json"
    golden = json.loads(golden_path.read_text())
    golden["probabilities"][5][0] += 0.01
    golden_path.write_text(json.dumps(golden))
    r = run_to_exit({"MODEL_PATH": str(model), "MODEL_SHA256": sklearn_bundle.sha256})
    assert r.code == EXIT_MODEL, r.text
    assert "row 5 probabilities differ" in r.text


def test_class_order_in_schema_must_match_the_model(sklearn_bundle: Bundle, copy_bundle) -> None:  # type: ignore[no-untyped-def]
    model = copy_bundle(sklearn_bundle)
    schema_path = model.parent / "schema.json"
    schema = json.loads(schema_path.read_text())
    schema["classes"] = list(reversed(schema["classes"]))
    schema_path.write_text(json.dumps(schema))
    r = run_to_exit({"MODEL_PATH": str(model), "MODEL_SHA256": sklearn_bundle.sha256})
    assert r.code == EXIT_MODEL, r.text
    assert "differ from the model's own" in r.text


def test_an_example_the_server_would_refuse_is_a_broken_bundle(sklearn_bundle: Bundle, copy_bundle) -> None:  # type: ignore[no-untyped-def]
    model = copy_bundle(sklearn_bundle)
    (model.parent / "examples.json").write_text(json.dumps([{"instances": [[1, 2]]}]))
    r = run_to_exit({"MODEL_PATH": str(model), "MODEL_SHA256": sklearn_bundle.sha256})
    assert r.code == EXIT_MODEL, r.text
    assert "examples.json[0].instances[0] has 2 values" in r.text


def test_not_a_model_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.joblib"
    bogus.write_bytes(b"not a pickle")
    r = run_to_exit({"MODEL_PATH": str(bogus), "MODEL_ALLOW_UNVERIFIED": "1"})
    assert r.code == EXIT_MODEL
    assert "cannot load" in r.text


def test_sigterm_drains_and_exits_zero(sklearn_bundle: Bundle, tmp_path: Path) -> None:
    server = Server(sklearn_bundle.env()).start(tmp_path / "log")
    assert server.post("/predict", {"instances": [[1, 2, 3, 4]]}).status == 200
    t0 = time.monotonic()
    code = server.stop()
    assert code == 0, server.output()
    assert time.monotonic() - t0 < 15
    assert "draining and shutting down" in server.output()
