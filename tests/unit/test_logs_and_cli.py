"""Structured log lines and the `modelship` command line."""

from __future__ import annotations

import json
import logging

import pytest

from modelship import __version__, cli, logs

pytestmark = pytest.mark.unit


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("modelship", logging.INFO, __file__, 1, "scaled %s", ("x",), None)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_namespace_and_name_from_kopf_object_loggers() -> None:
    ref = {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "namespace": "ml",
        "name": "fraud",
    }
    line = json.loads(logs.JsonFormatter().format(record(k8s_ref=ref)))
    assert (line["namespace"], line["name"], line["message"], line["level"]) == (
        "ml",
        "fraud",
        "scaled x",
        "info",
    )


def test_json_lines_carry_the_namespace_and_name_from_our_object_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="modelship"):
        logs.object_logger("ml", "fraud").info("resynced")
    line = json.loads(logs.JsonFormatter().format(caplog.records[-1]))
    assert (line["namespace"], line["name"], line["kind"]) == ("ml", "fraud", "ModelDeployment")


def test_version_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


def test_crd_check_command_passes_on_the_committed_crd() -> None:
    assert cli.main(["crd", "--check"]) == 0


def test_run_requires_no_arguments_and_accepts_namespaces() -> None:
    args = cli._parser().parse_args(["run", "-n", "a", "--namespace", "b", "--resync-seconds", "5"])
    assert (args.namespace, args.resync_seconds, args.liveness) == (["a", "b"], 5.0, cli.DEFAULT_LIVENESS)


def test_liveness_probe_reports_resync_passes_and_fails_when_the_loop_stalls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    import kopf

    from modelship import handlers

    monkeypatch.setattr(handlers.RUNTIME, "resync_seconds", 10.0)
    monkeypatch.setattr(handlers.RUNTIME, "resync_passes", 7)
    monkeypatch.setattr(handlers.RUNTIME, "last_resync", time.monotonic() - 5)
    assert handlers.resync_probe()["passes"] == 7
    monkeypatch.setattr(handlers.RUNTIME, "last_resync", time.monotonic() - 61)
    monkeypatch.setattr(handlers.RUNTIME, "reconciler", None)
    with pytest.raises(kopf.PermanentError, match="no resync pass"):
        handlers.resync_probe()
