"""Configuration from the environment: every bad value is refused with the variable's name."""

from __future__ import annotations

import pytest
from modelserver.config import ConfigError, from_env

pytestmark = pytest.mark.unit

SHA = "a" * 64


def test_defaults() -> None:
    s = from_env({"MODEL_PATH": "/models/fraud.joblib", "MODEL_SHA256": SHA})
    assert s.framework == "sklearn"
    assert s.model_name == "fraud"
    assert s.model_version == "unversioned"
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert s.accelerator == "cpu"
    assert s.max_body_bytes == 1_048_576
    assert s.sklearn_fast_path is True
    assert s.keepalive_timeout_s == 620  # above the idle timeouts of common gateways


def test_everything_set() -> None:
    s = from_env(
        {
            "MODEL_PATH": "/m/x_edgetpu.tflite",
            "MODEL_SHA256": "sha256:" + SHA.upper(),
            "MODEL_NAME": "det",
            "MODEL_VERSION": "2024-06-01",
            "ACCELERATOR": "coral",
            "HOST": "0.0.0.0",
            "PORT": "9000",
            "MAX_BODY_BYTES": "2048",
            "MAX_BATCH_ROWS": "8",
            "INFERENCE_THREADS": "2",
            "SKLEARN_FAST_PATH": "false",
            "KEEPALIVE_TIMEOUT_SECONDS": "75",
        }
    )
    assert s.framework == "tflite" and s.accelerator == "coral"
    assert s.model_sha256 == SHA
    assert (s.model_name, s.model_version, s.host, s.port) == ("det", "2024-06-01", "0.0.0.0", 9000)
    assert (s.max_body_bytes, s.max_batch_rows, s.inference_threads) == (2048, 8, 2)
    assert s.sklearn_fast_path is False
    assert s.keepalive_timeout_s == 75


def test_faults_are_off_unless_asked_for() -> None:
    base = {"MODEL_PATH": "/m/model.joblib", "MODEL_SHA256": SHA}
    assert not from_env(base).faults.on
    faults = from_env(
        base | {"MODELSERVER_FAULT_ERROR_RATIO": "0.3", "MODELSERVER_FAULT_LATENCY": "0.5"}
    ).faults
    assert faults.on and (faults.error_ratio, faults.latency_s) == (0.3, 0.5)
    assert from_env(base | {"MODELSERVER_FAULT_UNHEALTHY_AFTER": "30"}).faults.on


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "MODEL_PATH is required"),
        ({"MODEL_PATH": "/m/model.bin"}, "cannot tell the framework"),
        ({"MODEL_FRAMEWORK": "torch"}, "MODEL_FRAMEWORK='torch'"),
        ({"MODEL_SHA256": "abc"}, "MODEL_SHA256 must be 64 hex digits"),
        ({"MODEL_SHA256": ""}, "MODEL_SHA256 is required"),
        ({"ACCELERATOR": "gpu"}, "ACCELERATOR='gpu'"),
        ({"ACCELERATOR": "coral"}, "needs a TFLite model"),
        ({"PORT": "http"}, "PORT='http' is not an integer"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES=10 must be at least 64"),
        ({"MODEL_ALLOW_UNVERIFIED": "maybe"}, "MODEL_ALLOW_UNVERIFIED='maybe' must be true or false"),
        ({"MODEL_NAME": "has space"}, "MODEL_NAME='has space'"),
        (
            {"MODELSERVER_FAULT_ERROR_RATIO": "1.5"},
            "MODELSERVER_FAULT_ERROR_RATIO=1.5 must be between 0 and 1",
        ),
        ({"MODELSERVER_FAULT_ERROR_RATIO": "nan"}, "MODELSERVER_FAULT_ERROR_RATIO=nan must be between"),
        ({"MODELSERVER_FAULT_ERROR_RATIO": "a third"}, "MODELSERVER_FAULT_ERROR_RATIO='a third' is not a"),
        ({"MODELSERVER_FAULT_LATENCY": "-0.1"}, "MODELSERVER_FAULT_LATENCY=-0.1 must be between 0 and 60"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    base = {"MODEL_PATH": "/m/model.joblib", "MODEL_SHA256": SHA}
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        from_env(base | env if env else {})
