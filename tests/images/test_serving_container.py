"""The serving image run as a container, with a model mounted read-only at /models."""

from __future__ import annotations

import json
import re

import pytest
from modelserver.sample_models import Bundle

from imagebuild.build import Built
from imagebuild.podman import podman

from .conftest import Server, model_args
from .helpers import http

pytestmark = pytest.mark.images


def test_server_runs_as_non_root_uid(server: Server) -> None:
    status = podman("exec", server.name, "cat", "/proc/1/status").stdout
    uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
    gids = re.search(r"^Gid:\s+(\d+)\s+(\d+)", status, re.M)
    assert uids and gids
    assert uids.groups() == ("10001", "10001")
    assert gids.groups() == ("10001", "10001")


def test_server_serves_with_a_read_only_root_and_model(server: Server) -> None:
    info = json.loads(podman("inspect", server.name).stdout)[0]
    assert info["HostConfig"]["ReadonlyRootfs"] is True
    models = [m for m in info["Mounts"] if m["Destination"] == "/models"]
    assert models and models[0]["RW"] is False
    # Nothing in the image or the model can be written, and the server still answered /readyz.
    for path in ("/app/probe", "/models/probe", "/opt/venv/probe"):
        r = podman("exec", server.name, "touch", path, check=False)
        assert r.returncode != 0 and "Read-only file system" in r.stderr, (path, r.stderr)


def test_readyz_and_healthz(server: Server) -> None:
    assert http(server.port, "/readyz")[0] == 200
    assert http(server.port, "/healthz")[0] == 200


def test_predict_answers_rows_in_both_shapes(server: Server) -> None:
    code, body = http(server.port, "/predict", {"instances": [[10.5, 6.1, 0.2, -1.3], [9.0, 4.0, 2.5, 1.0]]})
    assert code == 200, body
    answer = json.loads(body)
    assert len(answer["predictions"]) == 2
    assert set(answer["predictions"]) <= {"low", "medium", "high"}
    code, body = http(
        server.port, "/predict", {"instances": [{"amount": 10.5, "age": 6.1, "tenure": 0.2, "score": -1.3}]}
    )
    assert code == 200, body
    assert json.loads(body)["predictions"][0] == answer["predictions"][0]


def test_get_predict_lists_examples_that_work(server: Server) -> None:
    code, body = http(server.port, "/predict")
    assert code == 200, body
    examples = json.loads(body)["examples"]
    assert examples
    for ex in examples:
        assert "curl -s -X POST" in ex["curl"]
        code, answer = http(server.port, "/predict", ex["request"])
        assert code == 200, answer


def test_metadata_reports_the_model_and_the_image(server: Server) -> None:
    code, body = http(server.port, "/metadata")
    assert code == 200, body
    meta = json.dumps(json.loads(body))
    image: Built = server.image
    # The digest came in through IMAGE_DIGEST (as the operator sets it); the rest is baked at build.
    for fact in (image.digest, image.revision, image.version, "risk"):
        assert fact in meta, (fact, meta)
    assert '"verified": true' in meta


def test_metrics_are_prometheus_text(server: Server) -> None:
    http(server.port, "/predict", {"instances": [[10.5, 6.1, 0.2, -1.3]]})
    code, body = http(server.port, "/metrics")
    assert code == 200
    assert re.search(r'^modelserver_model_info\{.*model_name="risk".*\} 1(\.0)?$', body, re.M), body[:2000]
    assert re.search(r'^modelserver_requests_total\{.*route="/predict".*\} [1-9]', body, re.M), body[:2000]


def test_refuses_to_start_when_model_sha256_does_not_match(
    serving_image: Built, sklearn_bundle: Bundle
) -> None:
    wrong = "0" * 64
    r = podman(
        "run",
        "--rm",
        "--pull=never",
        "--read-only",
        "--network=none",
        *model_args(sklearn_bundle, sha256=wrong),
        serving_image.dev_ref,
        check=False,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 3, out
    assert f"checksum mismatch for '/models/model.joblib': MODEL_SHA256={wrong}" in out, out
    assert sklearn_bundle.sha256 in out
