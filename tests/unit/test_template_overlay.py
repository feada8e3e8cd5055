"""spec.template: the pod overlay merged into each revision's pods, its place in the revision
hash, and its schema (Kubernetes' own PodSpec definitions, spliced into the CRD)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from modelship import api, crd, podschema
from modelship.core import manifests, overlay, revisions

from .enginesim import OWNER, World, command, spec

pytestmark = pytest.mark.unit

SECRET_ENV = {"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}
SIDECAR = {"name": "log-shipper", "image": "registry.example/shipper@sha256:" + "c" * 64}


def template(**pod_spec: Any) -> dict[str, Any]:
    return {"spec": pod_spec}


def pod(placement: str = "device", **change: Any) -> dict[str, Any]:
    s = spec(**change)
    d = manifests.deployment(OWNER, "fraud-0123456789", revisions.template_of(s), 2, placement=placement)  # type: ignore[arg-type]
    result: dict[str, Any] = d["spec"]["template"]
    return result


def model(p: dict[str, Any]) -> dict[str, Any]:
    (found,) = [c for c in p["spec"]["containers"] if c["name"] == manifests.CONTAINER]
    return found


# ---- the model container -----------------------------------------------------------------


def test_model_env_comes_after_modelships_and_spec_env_and_keeps_value_from() -> None:
    p = pod(
        env=[{"name": "MODEL_PATH", "value": "/m"}],
        template=template(containers=[{"name": "model", "env": [SECRET_ENV]}]),
    )
    names = [e["name"] for e in model(p)["env"]]
    assert names[:5] == ["MODEL_NAME", "MODEL_VERSION", "MODEL_SHA256", "PORT", "HOST"]
    assert names[-2:] == ["MODEL_PATH", "API_TOKEN"]
    assert model(p)["env"][-1] == SECRET_ENV


def test_model_gets_env_from_mounts_after_tmp_and_command_args() -> None:
    env_from = [{"secretRef": {"name": "creds"}}, {"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}]
    mount = {"name": "models", "mountPath": "/models", "readOnly": True}
    p = pod(
        template=template(
            volumes=[{"name": "models", "persistentVolumeClaim": {"claimName": "models"}}],
            containers=[
                {
                    "name": "model",
                    "envFrom": env_from,
                    "volumeMounts": [mount],
                    "command": ["modelserver"],
                    "args": ["--workers=2"],
                }
            ],
        )
    )
    m = model(p)
    assert m["envFrom"] == env_from
    assert m["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}, mount]
    assert (m["command"], m["args"]) == (["modelserver"], ["--workers=2"])
    assert [v["name"] for v in p["spec"]["volumes"]] == ["tmp", "models"]


def test_model_keeps_modelships_image_ports_and_name() -> None:
    p = pod(template=template(containers=[{"name": "model", "workingDir": "/srv"}]))
    m = model(p)
    assert m["image"] == spec().image
    assert m["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert m["workingDir"] == "/srv"
    assert len(p["spec"]["containers"]) == 1


def test_a_probe_without_a_handler_tunes_modelships_and_one_with_a_handler_replaces_it() -> None:
    exec_probe = {"exec": {"command": ["/bin/check"]}, "periodSeconds": 7}
    p = pod(
        template=template(
            containers=[
                {"name": "model", "startupProbe": {"failureThreshold": 120}, "readinessProbe": exec_probe}
            ]
        )
    )
    m = model(p)
    assert m["startupProbe"]["failureThreshold"] == 120
    assert m["startupProbe"]["httpGet"] == {"path": manifests.LIVENESS_PATH, "port": "http"}
    assert m["readinessProbe"] == exec_probe
    assert m["livenessProbe"] == pod()["spec"]["containers"][0]["livenessProbe"]


# ---- security ------------------------------------------------------------------------------


def test_restricted_security_context_is_the_default_and_the_overlay_may_add_to_it() -> None:
    p = pod(
        template=template(
            securityContext={"fsGroup": 2000, "runAsUser": 1000},
            containers=[
                {"name": "model", "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": True}}
            ],
        )
    )
    assert p["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
        "fsGroup": 2000,
        "runAsUser": 1000,
    }
    ctx = model(p)["securityContext"]
    assert ctx["runAsUser"] == 1000
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["allowPrivilegeEscalation"] is False


def test_sidecars_and_init_containers_get_the_restricted_container_context_under_their_own() -> None:
    init = {"name": "warm", "image": SIDECAR["image"], "securityContext": {"readOnlyRootFilesystem": True}}
    p = pod(template=template(containers=[SIDECAR], initContainers=[init]))
    sidecar = p["spec"]["containers"][1]
    assert sidecar["name"] == "log-shipper"
    assert sidecar["securityContext"] == overlay.RESTRICTED_CONTAINER
    assert p["spec"]["initContainers"][0]["securityContext"] == {
        **overlay.RESTRICTED_CONTAINER,
        "readOnlyRootFilesystem": True,
    }


def test_host_device_access_stays_privileged_whatever_the_overlay_says() -> None:
    p = pod(
        accelerator={"type": "coral", "hostPath": True},
        template=template(containers=[{"name": "model", "securityContext": {"runAsUser": 1000}}]),
    )
    ctx = model(p)["securityContext"]
    assert (ctx["privileged"], ctx["allowPrivilegeEscalation"], ctx["runAsUser"]) == (True, True, 1000)


@pytest.mark.parametrize(
    ("over", "expected"),
    [
        ({}, False),
        ({"serviceAccountName": "fraud"}, None),  # the account's own setting decides
        ({"serviceAccountName": "fraud", "automountServiceAccountToken": False}, False),
        ({"automountServiceAccountToken": True}, True),
    ],
)
def test_the_token_is_mounted_only_for_a_named_service_account_or_when_asked(
    over: dict[str, Any], expected: bool | None
) -> None:
    p = pod(template=template(**over))
    assert p["spec"].get("automountServiceAccountToken") == expected
    assert p["spec"].get("serviceAccountName") == over.get("serviceAccountName")


# ---- the pod -------------------------------------------------------------------------------


def test_pod_labels_and_annotations_are_added_and_modelships_win() -> None:
    # Admission refuses modelship.io/ keys; the merge still keeps the revision's labels.
    meta = {
        "labels": {"team": "payments", manifests.REVISION_LABEL: "mine"},
        "annotations": {"example.com/owner": "oncall"},
    }
    p = pod(template={"metadata": meta})
    assert p["metadata"]["labels"]["team"] == "payments"
    assert p["metadata"]["labels"][manifests.REVISION_LABEL] == "fraud-0123456789"
    assert p["metadata"]["annotations"] == {"example.com/owner": "oncall"}


def test_scheduling_fields_are_set() -> None:
    spread = [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]
    over = {
        "nodeSelector": {"pool": "inference"},
        "tolerations": [{"key": "pool", "operator": "Exists"}],
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "high",
        "topologySpreadConstraints": spread,
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        "terminationGracePeriodSeconds": 60,
    }
    p = pod(template=template(**over))
    for key, value in over.items():
        assert p["spec"][key] == value, key


def test_coral_placement_is_kept_and_the_overlays_scheduling_added() -> None:
    coral = pod(accelerator={"type": "coral"})["spec"]
    p = pod(
        accelerator={"type": "coral"},
        template=template(
            tolerations=[{"key": "pool", "operator": "Exists"}],
            affinity={"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []}},
        ),
    )["spec"]
    assert p["tolerations"] == [*coral["tolerations"], {"key": "pool", "operator": "Exists"}]
    assert p["affinity"]["nodeAffinity"] == coral["affinity"]["nodeAffinity"]
    assert "podAntiAffinity" in p["affinity"]


def test_no_overlay_renders_the_pod_as_before() -> None:
    assert pod(template={}) == pod() == pod(template={"spec": {}, "metadata": {}})
    assert pod()["spec"]["automountServiceAccountToken"] is False


def test_the_overlay_is_not_changed_by_merging() -> None:
    t = api.PodTemplate.model_validate(template(containers=[{"name": "model", "env": [SECRET_ENV]}, SIDECAR]))
    before = api.dump(t)
    pod(template=before)
    overlay.apply({"metadata": {}, "spec": {"containers": [{"name": "model", "env": []}]}}, t)
    assert api.dump(t) == before


# ---- revisions -----------------------------------------------------------------------------


def test_no_overlay_keeps_todays_revision_names() -> None:
    assert revisions.revision_hash(revisions.template_of(spec())) == "7b5b378b2e"
    assert revisions.template_of(spec()).template is None


def test_a_changed_overlay_makes_a_new_revision() -> None:
    one = revisions.revision_hash(revisions.template_of(spec(template=template(serviceAccountName="a"))))
    two = revisions.revision_hash(revisions.template_of(spec(template=template(serviceAccountName="b"))))
    assert len({one, two, revisions.revision_hash(revisions.template_of(spec()))}) == 3


# ---- schema ----------------------------------------------------------------------------------


def test_committed_pod_schema_matches_the_kubernetes_module() -> None:
    text = podschema.fresh()
    if text is None:
        pytest.skip(
            f"!!! {podschema.MODULE}@{podschema.kubernetes_version()} is neither in the Go module cache nor "
            "downloadable: the committed podspec_schema.json was NOT checked against it !!!"
        )
    assert podschema.DEFAULT_OUTPUT.read_text() == text, "run `python -m modelship.podschema`"


def test_pod_schema_is_kubernetes_podspec_subset_in_structural_form() -> None:
    schema = podschema.load()
    assert set(schema["properties"]) == set(podschema.POD_SPEC_FIELDS)
    container = schema["properties"]["containers"]["items"]
    assert container["required"] == ["name"]
    assert "valueFrom" in container["properties"]["env"]["items"]["properties"]
    assert "persistentVolumeClaim" in schema["properties"]["volumes"]["items"]["properties"]
    assert schema["properties"]["containers"]["x-kubernetes-list-map-keys"] == ["name"]
    port = container["properties"]["livenessProbe"]["properties"]["httpGet"]["properties"]["port"]
    assert port["x-kubernetes-int-or-string"] is True
    text = podschema.render({"podSpec": schema})
    assert "$ref" not in text and '"description"' not in text and "patch-strategy" not in text


def test_crd_puts_the_pod_schema_and_its_rules_under_spec_template() -> None:
    root = crd.generate()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    pod_spec = root["properties"]["spec"]["properties"]["template"]["properties"]["spec"]
    assert pod_spec["properties"]["containers"]["maxItems"] == 16
    rules = [r["message"] for r in pod_spec["properties"]["containers"]["items"]["x-kubernetes-validations"]]
    assert any("image must not be set on the model container" in m for m in rules)
    assert api.POD_SPEC_MARK not in str(root)
    stored = root["properties"]["status"]["properties"]["stableTemplate"]["properties"]["template"]
    assert stored["properties"]["spec"] == {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def test_the_pod_spec_overlay_refuses_what_kubernetes_does_not_define() -> None:
    assert "hostNetwork" not in podschema.load()["properties"]  # pruned subset: refused as unknown
    assert api.PodTemplate.model_validate(template(containers=[SIDECAR])).sidecars() == [SIDECAR]


def test_the_docs_overlay_example_parses_and_its_refusal_is_the_real_message() -> None:
    text = (podschema.ROOT / "docs" / "api.md").read_text()
    section = text.split("## spec.template: the pod overlay", 1)[1].split("\n## ", 1)[0]
    block = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    overlay_doc = api.PodTemplate.model_validate(yaml.safe_load(block)["spec"]["template"])
    assert overlay_doc.model_container()["env"][0]["valueFrom"]["secretKeyRef"]["key"] == "token"
    messages = [r.message for rules in api.POD_SPEC_RULES.values() for r in rules]
    shown = " ".join(section.split("is invalid: ", 1)[1].split("```", 1)[0].split())
    assert any(m in shown for m in messages), shown


def test_undo_restores_the_stable_overlay_exactly() -> None:
    # `undo` is a JSON merge patch: keys the new overlay added must be removed, not merged around.
    old = spec(template=template(nodeSelector={"pool": "a"}))
    world = World()
    world.reconcile(old)
    world.settle()
    world.reconcile(old)
    new = spec(
        template={"metadata": {"labels": {"team": "x"}}, "spec": {"nodeSelector": {"zone": "b"}}},
        image="registry.example/fraud@sha256:" + "c" * 64,
    )
    world.reconcile(new)
    undone, _ = command("undo", new, world.status, apply=True)
    assert undone.template == old.template
    assert revisions.template_of(undone) == revisions.template_of(old)


def test_the_crd_with_the_pod_schema_still_fits_kubectl_apply() -> None:
    # Client-side `kubectl apply -f crds/` stores the object in an annotation: 256 KiB at most.
    compact = json.dumps(crd.generate(), separators=(",", ":"))
    assert len(compact) < 200 * 1024, len(compact)
