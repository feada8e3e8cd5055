"""spec.model.source: the API, the revision it makes, the rendered pod per source kind, and how a
checksum failure in the pods becomes an aborted rollout."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from modelserver.cli import EXIT_CHECKSUM
from pydantic import ValidationError

from modelship import api
from modelship.core import manifests, revisions, sources

from .enginesim import OWNER, World, spec

pytestmark = pytest.mark.unit

SHA = "a" * 64
OCI = "registry.example/models/fraud@sha256:" + "c" * 64
PVC = {"pvc": {"claimName": "models", "subPath": "fraud/v2", "path": "model.onnx"}}
URI = {"uri": {"url": "s3://models/fraud/v2/model.onnx", "secretRef": {"name": "model-store"}}}


def sourced(source: dict[str, Any] | None, **change: Any) -> api.ModelDeploymentSpec:
    model: dict[str, Any] = {"name": "fraud", "version": "1", "sha256": SHA}
    if source is not None:
        model["source"] = source
    return spec(model=model, **change)


def pod(source: dict[str, Any] | None, **change: Any) -> dict[str, Any]:
    s = sourced(source, **change)
    rendered = manifests.deployment(OWNER, "fraud-0123456789", revisions.template_of(s), 2)
    pod_spec: dict[str, Any] = rendered["spec"]["template"]["spec"]
    return pod_spec


def model_container(pod_spec: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = next(c for c in pod_spec["containers"] if c["name"] == manifests.CONTAINER)
    return container


def env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in container["env"]}


def volume(pod_spec: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(v for v in pod_spec["volumes"] if v["name"] == sources.VOLUME)
    return found


RESTRICTED = {
    "runAsNonRoot": True,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}

# ---- the API ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "model_path"),
    [
        ({"image": {}}, "image", None),
        (PVC, "pvc", "/models/model.onnx"),
        ({"pvc": {"claimName": "models"}}, "pvc", "/models/model.joblib"),
        (URI, "uri", "/models/model.onnx"),
        ({"uri": {"url": "https://h.example/dl?id=7", "path": "risk.onnx"}}, "uri", "/models/risk.onnx"),
        ({"oci": {"reference": OCI}}, "oci", "/models/model.joblib"),
    ],
)
def test_each_source_kind_says_where_the_server_finds_the_model(
    source: dict[str, Any], kind: str, model_path: str | None
) -> None:
    parsed = sourced(source).model.source
    assert parsed is not None and (parsed.kind, parsed.model_path) == (kind, model_path)


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ({"uri": {"url": "models.example/model.onnx"}}, "spec.model.source.uri.url must start with https://"),
        ({"uri": {"url": "http://models.example/model.onnx"}}, "spec.model.source.uri.url must start with"),
        (
            {"oci": {"reference": "registry.example/models/fraud:v2"}},
            "spec.model.source.oci.reference must pin",
        ),
        ({"pvc": {"claimName": "models", "path": "../etc/passwd"}}, "spec.model.source.pvc.path must be"),
        ({"pvc": {"claimName": "models", "subPath": "/abs"}}, "spec.model.source.pvc.subPath must be"),
        ({"pvc": {"path": "model.onnx"}}, "claimName"),
    ],
)
def test_bad_sources_are_refused_naming_the_field(source: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        sourced(source)


# ---- revisions --------------------------------------------------------------------------------


def test_an_unset_source_and_image_spelled_out_keep_todays_revision_name() -> None:
    today = revisions.revision_hash(revisions.template_of(spec()))
    assert revisions.revision_hash(revisions.template_of(sourced(None))) == today
    assert revisions.revision_hash(revisions.template_of(sourced({"image": {}}))) == today


@pytest.mark.parametrize("source", [PVC, URI, {"oci": {"reference": OCI}}])
def test_a_mounted_or_fetched_source_is_a_new_revision(source: dict[str, Any]) -> None:
    assert revisions.revision_name(
        "fraud", revisions.template_of(sourced(source))
    ) != revisions.revision_name("fraud", revisions.template_of(sourced(None)))


# ---- the rendered pod, per kind ---------------------------------------------------------------


def test_image_source_renders_exactly_todays_pod() -> None:
    # Deployments are applied on every pass: any difference would restart every existing model.
    assert pod({"image": {}}) == pod(None)
    assert "MODEL_PATH" not in env(model_container(pod(None)))
    assert "initContainers" not in pod(None)


def test_pvc_source_mounts_the_claim_read_only() -> None:
    p = pod(PVC)
    assert volume(p) == {
        "name": "modelship-model",
        "persistentVolumeClaim": {"claimName": "models", "readOnly": True},
    }
    container = model_container(p)
    assert {
        "name": "modelship-model",
        "mountPath": "/models",
        "readOnly": True,
        "subPath": "fraud/v2",
    } in container["volumeMounts"]
    assert env(container)["MODEL_PATH"] == "/models/model.onnx"
    assert env(container)["MODEL_SHA256"] == SHA  # the server verifies the mounted file before ready
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert container["securityContext"] == RESTRICTED
    assert "initContainers" not in p


def test_uri_source_fetches_with_the_serving_image_into_an_empty_dir() -> None:
    p = pod(URI, resources={"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}})
    assert volume(p) == {"name": "modelship-model", "emptyDir": {}}
    [fetch] = p["initContainers"]
    assert fetch["name"] == "fetch-model"
    assert fetch["image"] == spec().image
    assert fetch["command"] == ["python", "-m", "modelserver", "fetch"]
    assert fetch["args"] == [
        "s3://models/fraud/v2/model.onnx",
        "--sha256",
        SHA,
        "--dest",
        "/models/model.onnx",
    ]
    assert fetch["envFrom"] == [{"secretRef": {"name": "model-store"}}]
    assert fetch["securityContext"] == RESTRICTED
    assert fetch["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert fetch["resources"] == {"requests": {"cpu": "250m"}}
    assert {"name": "modelship-model", "mountPath": "/models"} in fetch[
        "volumeMounts"
    ]  # writable for the fetch
    container = model_container(p)
    assert {"name": "modelship-model", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert env(container)["MODEL_PATH"] == "/models/model.onnx"
    assert "envFrom" not in container  # credentials reach only the fetch container


def test_uri_source_without_a_secret_has_no_env_from() -> None:
    [fetch] = pod({"uri": {"url": "https://models.example/fraud/model.joblib"}})["initContainers"]
    assert "envFrom" not in fetch
    assert fetch["args"][-1] == "/models/model.joblib"


def test_oci_source_is_an_image_volume() -> None:
    p = pod({"oci": {"reference": OCI, "path": "fraud/model.onnx"}})
    assert volume(p) == {"name": "modelship-model", "image": {"reference": OCI, "pullPolicy": "IfNotPresent"}}
    container = model_container(p)
    assert {"name": "modelship-model", "mountPath": "/models", "readOnly": True} in container["volumeMounts"]
    assert env(container)["MODEL_PATH"] == "/models/fraud/model.onnx"


def test_the_fetch_container_stays_restricted_when_a_host_path_coral_makes_the_model_privileged() -> None:
    p = pod(URI, accelerator={"type": "coral", "hostPath": True, "rollout": "surge"})
    assert model_container(p)["securityContext"]["privileged"] is True
    assert p["initContainers"][0]["securityContext"] == RESTRICTED


# ---- a wrong checksum in the pods ---------------------------------------------------------------


def test_the_operator_knows_the_servers_checksum_exit_code() -> None:
    assert sources.CHECKSUM_EXIT_CODE == EXIT_CHECKSUM


FETCH_SAID = (
    "modelserver fetch: checksum mismatch: expected sha256 "
    + SHA
    + " but got sha256 "
    + "f" * 64
    + " (5 bytes) "
    "from https://models.example/model.onnx; the artifact was not stored"
)


def pod_status(
    init: list[dict[str, Any]] | None = None, main: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {
        "metadata": {"name": "fraud-0123456789-abcde"},
        "status": {"initContainerStatuses": init or [], "containerStatuses": main or []},
    }


def test_a_fetch_container_that_failed_the_checksum_is_named_with_both_checksums() -> None:
    failing = {
        "name": "fetch-model",
        "state": {"waiting": {"reason": "CrashLoopBackOff"}},
        "lastState": {"terminated": {"exitCode": 3, "message": "downloading\n" + FETCH_SAID + "\n"}},
    }
    message = sources.checksum_failure([pod_status(init=[failing])], SHA, "model")
    assert message is not None
    assert f"spec.model.sha256 {SHA}" in message and "got sha256 " + "f" * 64 in message
    assert "pod fraud-0123456789-abcde, container fetch-model exited with code 3" in message


def test_a_model_container_that_failed_the_checksum_counts_even_without_a_message() -> None:
    failing = {"name": "model", "state": {"terminated": {"exitCode": 3}}}
    message = sources.checksum_failure([pod_status(main=[failing])], SHA, "model")
    assert message is not None and message.endswith("exited with code 3)")


@pytest.mark.parametrize(
    "statuses",
    [
        {"init": [{"name": "fetch-model", "lastState": {"terminated": {"exitCode": 5, "message": "404"}}}]},
        {
            "main": [{"name": "model", "lastState": {"terminated": {"exitCode": 4}}}]
        },  # unloadable, not checksum
        {"main": [{"name": "sidecar", "state": {"terminated": {"exitCode": 3}}}]},  # not ours
        {"main": [{"name": "model", "state": {"running": {}}}]},
    ],
)
def test_other_failures_are_not_checksum_failures(statuses: dict[str, Any]) -> None:
    assert sources.checksum_failure([pod_status(**statuses)], SHA, "model") is None


def test_a_canary_whose_pods_refuse_the_model_aborts_with_a_condition_naming_the_checksum() -> None:
    old = sourced(PVC)
    world = World()
    world.reconcile(old)
    world.settle()
    world.reconcile(old)
    new = sourced(URI)
    world.reconcile(new)
    canary = revisions.revision_name(OWNER.name, revisions.template_of(new))
    failure = sources.checksum_failure(
        [
            pod_status(
                init=[
                    {
                        "name": "fetch-model",
                        "lastState": {"terminated": {"exitCode": 3, "message": FETCH_SAID}},
                    }
                ]
            )
        ],
        SHA,
        "model",
    )
    world.deployments[canary] = dataclasses.replace(
        world.deployments[canary], observed_generation=1, model_failure=failure
    )
    decision = world.reconcile(new)
    assert decision.status.aborted is not None and decision.status.aborted.revision == canary
    assert decision.status.aborted.reason == "ModelChecksumMismatch"
    assert decision.status.phase == "Degraded"
    progressing = next(c for c in decision.status.conditions or [] if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ModelChecksumMismatch")
    assert SHA in progressing.message and "f" * 64 in progressing.message
    assert ("Warning", "ModelChecksumMismatch") in [(e.type, e.reason) for e in decision.events]


def test_a_first_revision_whose_pods_refuse_the_model_is_degraded_naming_the_checksum() -> None:
    # No stable revision to fall back to: nothing to abort, but no waiting for the deadline either.
    s = sourced(URI)
    world = World()
    world.reconcile(s)
    name = revisions.revision_name(OWNER.name, revisions.template_of(s))
    failure = sources.checksum_failure(
        [
            pod_status(
                init=[
                    {"name": "fetch-model", "state": {"terminated": {"exitCode": 3, "message": FETCH_SAID}}}
                ]
            )
        ],
        SHA,
        "model",
    )
    world.deployments[name] = dataclasses.replace(
        world.deployments[name], observed_generation=1, model_failure=failure
    )
    decision = world.reconcile(s)
    assert decision.status.phase == "Degraded"
    progressing = next(c for c in decision.status.conditions or [] if c.type == "Progressing")
    assert (progressing.status, progressing.reason) == ("False", "ModelChecksumMismatch")
    assert "f" * 64 in progressing.message and "0/2 replicas available" in progressing.message
