"""The API server itself refuses bad ModelDeployments, naming the field; the examples are accepted."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from modelship.kube.storage import Storage

from .mdhelpers import EXAMPLES, crd_installed, create_md, example, kube, md_path, refusal

__all__ = ["crd_installed", "kube"]  # fixtures used by this module
pytestmark = pytest.mark.integration

DIGEST = "sha256:" + "0123456789abcdef" * 4
Edit = Callable[[dict[str, Any]], None]


def canary(*steps: dict[str, Any]) -> Edit:
    def edit(md: dict[str, Any]) -> None:
        md["spec"]["strategy"] = {"canary": {"steps": list(steps)}}

    return edit


def put(path: str, value: Any) -> Edit:
    """Set a dotted path under the manifest (`spec.image`), creating objects as needed."""

    def edit(md: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = md
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value

    return edit


def analysis(*metrics: dict[str, Any]) -> Edit:
    return put("spec.analysis", {"metrics": list(metrics)})


def edits(*each: Edit) -> Edit:
    def edit(md: dict[str, Any]) -> None:
        for one in each:
            one(md)

    return edit


def drop(path: str) -> Edit:
    def edit(md: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = md
        for key in parents:
            node = node[key]
        del node[last]

    return edit


def model_source(source: dict[str, Any]) -> Edit:
    """spec.model.source, without basic.yaml's MODEL_PATH (modelship sets it for mounted models)."""
    return edits(put("spec.model.source", source), drop("spec.env"))


SIDECAR = {"name": "shipper", "image": "registry.example/shipper@" + DIGEST}


def pod_spec(**fields: Any) -> Edit:
    return put("spec.template", {"spec": fields})


# (id, edit of examples/basic.yaml, the field the refusal must name, a fragment of the reason)
INVALID: list[tuple[str, Edit, str, str]] = [
    ("image-tag", put("spec.image", "registry.example/fraud:1.0"), "spec.image", "pin the image by digest"),
    ("image-no-repo", put("spec.image", "@" + DIGEST), "spec.image", "pin the image by digest"),
    (
        "digest-uppercase",
        put("spec.image", "r.example/f@" + DIGEST.upper().replace("SHA", "sha")),
        "spec.image",
        "64 lowercase hex",
    ),
    ("digest-short", put("spec.image", "r.example/f@sha256:abc123"), "spec.image", "pin the image by digest"),
    ("model-sha256-short", put("spec.model.sha256", "abc"), "spec.model.sha256", "64 lowercase hex"),
    ("model-sha256-uppercase", put("spec.model.sha256", "A" * 64), "spec.model.sha256", "64 lowercase hex"),
    ("model-missing", drop("spec.model"), "spec.model", "Required value"),
    (
        "both-strategies",
        put("spec.strategy", {"canary": {"steps": [{"setWeight": 5}]}, "blueGreen": {}}),
        "spec.strategy",
        "exactly one of canary or blueGreen",
    ),
    ("neither-strategy", put("spec.strategy", {}), "spec.strategy", "exactly one of canary or blueGreen"),
    ("no-strategy", drop("spec.strategy"), "spec.strategy", "Required value"),
    ("no-steps", canary(), "spec.strategy.canary.steps", "at least 1 items"),
    (
        "weight-101",
        canary({"setWeight": 101}),
        "spec.strategy.canary.steps[0].setWeight",
        "less than or equal to 100",
    ),
    (
        "weight-negative",
        canary({"setWeight": -1}),
        "spec.strategy.canary.steps[0].setWeight",
        "greater than or equal to 0",
    ),
    (
        "weight-drops-unobserved",
        canary({"setWeight": 50}, {"setWeight": 10}),
        "spec.strategy.canary.steps",
        "may be lower than an earlier setWeight only with a pause, analysis or experiment step between",
    ),
    (
        "weight-drops-after-scale-only",
        canary({"setWeight": 40}, {"setCanaryScale": {"replicas": 2}}, {"setWeight": 20}),
        "spec.strategy.canary.steps",
        "may be lower",
    ),
    (
        "step-two-actions",
        canary({"setWeight": 10, "pause": {}}),
        "spec.strategy.canary.steps[0]",
        "exactly one of setWeight, pause, setCanaryScale",
    ),
    ("step-empty", canary({}), "spec.strategy.canary.steps[0]", "exactly one of setWeight"),
    (
        "canary-scale-two",
        canary({"setCanaryScale": {"replicas": 1, "weight": 5}}),
        "spec.strategy.canary.steps[0].setCanaryScale",
        "exactly one of replicas, weight",
    ),
    (
        "canary-scale-service-router",
        canary({"setWeight": 10}, {"pause": {}}, {"setCanaryScale": {"replicas": 2}}),
        "spec.strategy.canary.steps[].setCanaryScale",
        "needs spec.traffic.router gatewayAPI",
    ),
    (
        "pause-duration-words",
        canary({"setWeight": 5}, {"pause": {"duration": "ten minutes"}}),
        "spec.strategy.canary.steps[1].pause.duration",
        "must be a duration",
    ),
    (
        "progress-deadline-days",
        put("spec.progressDeadline", "1d"),
        "spec.progressDeadline",
        "must be a duration",
    ),
    (
        "bluegreen-delay-float",
        put("spec.strategy", {"blueGreen": {"scaleDownDelay": "1.5m"}}),
        "spec.strategy.blueGreen.scaleDownDelay",
        "must be a duration",
    ),
    ("replicas-negative", put("spec.replicas", -1), "spec.replicas", "greater than or equal to 0"),
    ("port-too-high", put("spec.port", 70000), "spec.port", "less than or equal to 65535"),
    (
        "metric-unknown-template",
        analysis({"name": "x", "template": "latency-p42", "max": 1}),
        "spec.analysis.metrics[0].template",
        "Unsupported value",
    ),
    (
        "metric-no-min-or-max",
        analysis({"name": "x", "template": "error-rate"}),
        "spec.analysis.metrics[0]",
        "set min or max",
    ),
    (
        "metric-template-and-query",
        analysis({"name": "x", "template": "error-rate", "query": "up", "max": 1}),
        "spec.analysis.metrics[0]",
        "exactly one of template, query, web or job",
    ),
    (
        "metric-min-above-max",
        analysis({"name": "x", "template": "accuracy", "min": 0.9, "max": 0.5}),
        "spec.analysis.metrics[0].min",
        "min must not be greater than max",
    ),
    (
        "metric-duplicate-name",
        analysis(
            {"name": "x", "template": "accuracy", "min": 0.9},
            {"name": "x", "template": "error-rate", "max": 0.1},
        ),
        "spec.analysis.metrics[1]",
        "Duplicate value",
    ),
    (
        "no-data-unknown",
        put("spec.analysis", {"noData": "ignore", "metrics": [{"name": "x", "query": "up", "max": 1}]}),
        "spec.analysis.noData",
        "Unsupported value",
    ),
    (
        "analysis-unreachable-timeout-words",
        put(
            "spec.analysis",
            {"unreachableTimeout": "ten minutes", "metrics": [{"name": "x", "query": "up", "max": 1}]},
        ),
        "spec.analysis.unreachableTimeout",
        "must be a duration",
    ),
    (
        "analysis-step-without-analysis",
        canary({"setWeight": 10}, {"analysis": {}}),
        "spec.analysis",
        "required when a canary step is an analysis step",
    ),
    (
        "pre-promotion-analysis-without-analysis",
        put("spec.strategy", {"blueGreen": {"prePromotionAnalysis": True}}),
        "spec.analysis",
        "blue/green asks for pre- or post-promotion analysis",
    ),
    (
        "background-step-out-of-range",
        edits(
            canary({"setWeight": 10}),
            put(
                "spec.analysis",
                {"background": {"startingStep": 1}, "metrics": [{"name": "x", "query": "up", "max": 1}]},
            ),
        ),
        "spec.analysis.background",
        "startingStep must be the index of one of its steps",
    ),
    (
        "prometheus-address-not-a-url",
        put(
            "spec.analysis",
            {
                "prometheus": {"address": "prometheus:9090"},
                "metrics": [{"name": "x", "query": "up", "max": 1}],
            },
        ),
        "spec.analysis.prometheus.address",
        "must be an http:// or https:// URL",
    ),
    (
        "analysis-count-zero",
        put("spec.analysis", {"count": 0, "metrics": [{"name": "x", "query": "up", "max": 1}]}),
        "spec.analysis.count",
        "greater than or equal to 1",
    ),
    (
        "abort-scale-down-delay-not-a-duration",
        put("spec.strategy.canary.abortScaleDownDelay", "soon"),
        "spec.strategy.canary.abortScaleDownDelay",
        "must be a duration",
    ),
    (
        "accelerator-unknown",
        put("spec.accelerator", {"type": "tpu-v5"}),
        "spec.accelerator.type",
        "Unsupported value",
    ),
    (
        "accelerator-interface",
        put("spec.accelerator", {"type": "coral", "interface": "m2"}),
        "spec.accelerator.interface",
        "Unsupported value",
    ),
    (
        "accelerator-preset-unknown",
        put("spec.accelerator", {"type": "coral", "nodeSelection": {"preset": "gfd"}}),
        "spec.accelerator.nodeSelection.preset",
        "Unsupported value",
    ),
    (
        "accelerator-preset-and-labels",
        put(
            "spec.accelerator",
            {"type": "coral", "nodeSelection": {"preset": "nfd", "matchLabels": {"edge": "true"}}},
        ),
        "spec.accelerator.nodeSelection",
        "set preset or matchLabels, not both",
    ),
    (
        "accelerator-rollout-unknown",
        put("spec.accelerator", {"type": "coral", "rollout": "replace-all"}),
        "spec.accelerator.rollout",
        "Unsupported value",
    ),
    (
        "accelerator-min-available-zero",
        put("spec.accelerator", {"type": "coral", "minAvailable": 0}),
        "spec.accelerator.minAvailable",
        "should be greater than or equal to 1",
    ),
    (
        "accelerator-count-too-high",
        put("spec.accelerator", {"type": "coral", "resource": {"count": 9}}),
        "spec.accelerator.resource.count",
        "should be less than or equal to 8",
    ),
    (
        "blue-green-devices-unconfirmed",
        edits(put("spec.strategy", {"blueGreen": {}}), put("spec.accelerator", {"type": "coral"})),
        "spec.accelerator",
        "must be set with strategy.blueGreen",
    ),
    (
        "smoke-test-lengths",
        put("spec.smokeTest", {"inputs": [[1.0], [2.0]], "expected": [[1.0]]}),
        "spec.smokeTest.expected",
        "same length",
    ),
    (
        "gateway-without-route",
        put("spec.traffic", {"router": "gatewayAPI"}),
        "spec.traffic.httpRoute",
        "required when router is gatewayAPI",
    ),
    (
        "router-unknown",
        put("spec.traffic", {"router": "linkerd"}),
        "spec.traffic.router",
        "Unsupported value",
    ),
    (
        "env-reserved",
        put("spec.env", [{"name": "MODEL_SHA256", "value": "x"}]),
        "spec.env",
        "may not set MODEL_NAME",
    ),
    (
        "env-reserved-feedback-key",
        put("spec.env", [{"name": "FEEDBACK_KEY", "value": "mine"}]),
        "spec.env",
        "POD_IP, FEEDBACK_KEY",
    ),
    (
        "env-duplicate",
        put("spec.env", [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}]),
        "spec.env[1]",
        "Duplicate value",
    ),
    (
        "limits-below-requests",
        put("spec.resources", {"requests": {"cpu": "2"}, "limits": {"cpu": "500m"}}),
        "spec.resources.limits",
        "must not be lower than spec.resources.requests",
    ),
    (
        "quantity-malformed",
        put("spec.resources", {"requests": {"memory": "lots"}}),
        "spec.resources.requests.memory",
        "should match",
    ),
    ("unknown-field", put("spec.replica", 3), "spec.replica", "unknown field"),
    # spec.template: modelship's own fields win; what the merge cannot honour is refused.
    (
        "template-model-image",
        pod_spec(containers=[{"name": "model", "image": "registry.example/other:latest"}]),
        "spec.template.spec.containers[].image",
        "must not be set on the model container",
    ),
    (
        "template-reserved-env",
        pod_spec(containers=[{"name": "model", "env": [{"name": "MODEL_SHA256", "value": "x"}]}]),
        "spec.template.spec.containers[].env",
        "may not set MODEL_NAME",
    ),
    (
        "template-coral-node-selector",
        edits(
            put("spec.accelerator", {"type": "coral"}),
            pod_spec(nodeSelector={"modelship.io/accelerator": "gpu"}),
        ),
        "spec.template.spec.nodeSelector",
        "may not select on the accelerator's node labels",
    ),
    (
        "template-coral-match-labels",
        edits(
            put("spec.accelerator", {"type": "coral", "nodeSelection": {"matchLabels": {"edge": "yes"}}}),
            pod_spec(nodeSelector={"edge": "no"}),
        ),
        "spec.template.spec.nodeSelector",
        "may not select on the accelerator's node labels",
    ),
    (
        "template-coral-affinity",
        edits(
            put("spec.accelerator", {"type": "coral"}),
            pod_spec(
                affinity={
                    "nodeAffinity": {
                        "requiredDuringSchedulingIgnoredDuringExecution": {
                            "nodeSelectorTerms": [{"matchExpressions": [{"key": "a", "operator": "Exists"}]}]
                        }
                    }
                }
            ),
        ),
        "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution",
        "may not be set with spec.accelerator",
    ),
    (
        "template-coral-toleration",
        edits(
            put("spec.accelerator", {"type": "coral"}),
            pod_spec(tolerations=[{"key": "modelship.io/accelerator", "operator": "Exists"}]),
        ),
        "spec.template.spec.tolerations",
        "set spec.accelerator.tolerations",
    ),
    (
        "template-model-ports",
        pod_spec(containers=[{"name": "model", "ports": [{"containerPort": 9090}]}]),
        "spec.template.spec.containers[].ports",
        "from spec.port and spec.resources",
    ),
    (
        "template-sidecar-without-image",
        pod_spec(containers=[{"name": "shipper"}]),
        "spec.template.spec.containers[].image",
        "required for a sidecar",
    ),
    (
        "template-tmp-volume",
        pod_spec(volumes=[{"name": "tmp", "emptyDir": {}}]),
        "spec.template.spec.volumes[].name",
        "may not be tmp or edgetpu",
    ),
    (
        "template-tmp-mount",
        pod_spec(containers=[{"name": "model", "volumeMounts": [{"name": "x", "mountPath": "/tmp"}]}]),
        "spec.template.spec.containers[].volumeMounts[].mountPath",
        "may not be /tmp",
    ),
    (
        "template-privileged-sidecar",
        pod_spec(containers=[{**SIDECAR, "securityContext": {"privileged": True}}]),
        "spec.template.spec.containers[0].securityContext",
        "restricted Pod Security Standard",
    ),
    (
        "template-root-pod",
        pod_spec(securityContext={"runAsUser": 0}),
        "spec.template.spec.securityContext",
        "restricted Pod Security Standard",
    ),
    (
        "template-revision-label",
        put("spec.template", {"metadata": {"labels": {"modelship.io/revision": "mine"}}}),
        "spec.template.metadata",
        "may not use the modelship.io/ prefix",
    ),
    (
        "template-mount-without-volume",
        pod_spec(
            containers=[{"name": "model", "volumeMounts": [{"name": "models", "mountPath": "/models"}]}]
        ),
        "spec.template.spec.containers[].volumeMounts[].name",
        "must name a volume of spec.template.spec.volumes",
    ),
    (
        "template-init-named-like-sidecar",
        pod_spec(containers=[SIDECAR], initContainers=[SIDECAR]),
        "spec.template.spec.initContainers[].name",
        "must differ from every containers[].name",
    ),
    (
        "template-init-named-model",
        pod_spec(initContainers=[{**SIDECAR, "name": "model"}]),
        "spec.template.spec.initContainers[].name",
        "may not be model or fetch-model",
    ),
    (
        "template-mount-over-model-source",
        edits(
            put("spec.model.source", {"pvc": {"claimName": "models"}}),
            drop("spec.env"),
            pod_spec(
                volumes=[{"name": "mine", "emptyDir": {}}],
                containers=[{"name": "model", "volumeMounts": [{"name": "mine", "mountPath": "/models"}]}],
            ),
        ),
        "spec.template.spec.containers",
        "may not set MODEL_PATH or mount at /models",
    ),
    ("template-host-network", pod_spec(hostNetwork=True), "spec.template.spec.hostNetwork", "unknown field"),
    (
        "template-env-shape",
        pod_spec(containers=[{"name": "model", "env": [{"name": "A", "valueFrom": "secret"}]}]),
        "spec.template.spec.containers[0].env[0].valueFrom",
        "must be of type object",
    ),
    (
        "source-uri-without-scheme",
        model_source({"uri": {"url": "models.example/fraud/model.onnx"}}),
        "spec.model.source.uri.url",
        "must start with https://, s3:// or gs://",
    ),
    (
        "source-uri-http",
        model_source({"uri": {"url": "http://models.example/fraud/model.onnx"}}),
        "spec.model.source.uri.url",
        "must start with https://, s3:// or gs://",
    ),
    (
        "source-uri-without-file-name",
        model_source({"uri": {"url": "https://models.example/fraud/?version=7"}}),
        "spec.model.source.uri.url",
        "must end in the artifact's file name",
    ),
    (
        "source-oci-without-digest",
        model_source({"oci": {"reference": "registry.example/models/fraud:v2"}}),
        "spec.model.source.oci.reference",
        "must pin the image or artifact by digest",
    ),
    (
        "source-pvc-without-claim",
        model_source({"pvc": {"path": "model.onnx"}}),
        "spec.model.source.pvc.claimName",
        "Required value",
    ),
    (
        "source-pvc-path-escapes",
        model_source({"pvc": {"claimName": "models", "path": "../secrets/model.onnx"}}),
        "spec.model.source.pvc.path",
        "must be a relative path",
    ),
    (
        "source-two-kinds",
        model_source({"pvc": {"claimName": "models"}, "oci": {"reference": "r.example/m@" + DIGEST}}),
        "spec.model.source",
        "exactly one of image, pvc, uri or oci",
    ),
    (
        "source-with-model-path-env",
        put("spec.model.source", {"pvc": {"claimName": "models"}}),  # basic.yaml sets MODEL_PATH
        "spec.env",
        "may not set MODEL_PATH when spec.model.source is pvc, uri or oci",
    ),
    ("name-too-long", put("metadata.name", "a" * 46), "metadata.name", "at most 45 characters"),
    (
        "evaluation-after-traffic",
        canary({"setWeight": 10}, {"evaluation": {"min": 0.9}}),
        "spec.strategy.canary.steps",
        "an evaluation step must come before any setWeight above 0",
    ),
    (
        "evaluation-without-limit",
        canary({"evaluation": {"maxDropVsStable": 0.02}}, {"setWeight": 10}),
        "spec.strategy.canary.steps[0].evaluation",
        "set min or max",
    ),
    (
        "evaluation-uri-without-sha256",
        canary({"evaluation": {"min": 0.9, "dataset": {"uri": "https://data.example/h.json"}}}),
        "spec.strategy.canary.steps[0].evaluation.dataset",
        "uri and sha256 go together",
    ),
    (
        "evaluation-unknown-metric",
        canary({"evaluation": {"min": 0.9, "metric": "f1"}}),
        "spec.strategy.canary.steps[0].evaluation.metric",
        "Unsupported value",
    ),
    (
        "load-test-rate-too-high",
        canary({"loadTest": {"rate": 500}}, {"setWeight": 10}),
        "spec.strategy.canary.steps[0].loadTest.rate",
        "200",
    ),
    (
        "load-test-too-long",
        canary({"loadTest": {"duration": "2h"}}, {"setWeight": 10}),
        "spec.strategy.canary.steps[0].loadTest.duration",
        "must be from 1s to 1h",
    ),
    (
        "load-test-too-many-requests",
        canary({"loadTest": {"requests": 100001}}, {"setWeight": 10}),
        "spec.strategy.canary.steps[0].loadTest.requests",
        "100000",
    ),
    (
        "load-test-with-a-url",
        canary({"loadTest": {"url": "http://example.com"}}, {"setWeight": 10}),
        "spec.strategy.canary.steps[0].loadTest",
        "url",
    ),
    (
        "preview-load-test-feedback-ratio",
        put("spec.strategy", {"blueGreen": {"prePromotionLoadTest": {"feedbackRatio": 2}}}),
        "spec.strategy.blueGreen.prePromotionLoadTest.feedbackRatio",
        "1",
    ),
    (
        "metric-job-without-provider",
        analysis({"name": "x", "job": {"template": {"spec": {"containers": []}}}}),
        "spec.analysis.metrics[0].provider",
        "provider job goes with job",
    ),
    (
        "metric-job-and-query",
        analysis({"name": "x", "provider": "job", "query": "up", "job": {"template": {}}}),
        "spec.analysis.metrics[0]",
        "exactly one of template, query, web or job",
    ),
    (
        "experiment-with-no-end",
        canary({"experiment": {"weight": 50}}),
        "spec.strategy.canary.steps[0].experiment",
        "set duration, minSamples or both",
    ),
    (
        "experiment-all-traffic",
        canary({"experiment": {"weight": 100, "duration": "1h"}}),
        "spec.strategy.canary.steps[0].experiment.weight",
        "99",
    ),
    (
        "experiment-unknown-metric",
        canary({"experiment": {"duration": "1h", "metrics": [{"name": "errors"}]}}),
        "spec.strategy.canary.steps[0].experiment.metrics[0].name",
        "Unsupported value",
    ),
    (
        "experiment-before-evaluation",
        canary({"experiment": {"duration": "1h"}}, {"evaluation": {"min": 0.9}}),
        "spec.strategy.canary.steps",
        "an evaluation step must come before any setWeight above 0 or experiment",
    ),
]


@pytest.mark.parametrize(
    ("edit", "field", "reason"), [case[1:] for case in INVALID], ids=[c[0] for c in INVALID]
)
def test_invalid_model_deployment_is_refused_naming_the_field(
    kube: Storage, namespace: str, crd_installed: None, edit: Edit, field: str, reason: str
) -> None:
    manifest = copy.deepcopy(example("basic.yaml"))
    edit(manifest)
    message = refusal(kube, namespace, manifest)
    assert field in message, message
    assert reason in message, message


def test_there_are_at_least_twenty_refusal_cases() -> None:
    assert len(INVALID) >= 20


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.yaml")))
def test_example_is_accepted_and_defaulted(
    kube: Storage, namespace: str, crd_installed: None, name: str
) -> None:
    created = create_md(kube, namespace, example(name))
    stored = kube.get(md_path(namespace, created["metadata"]["name"]))
    assert stored is not None
    assert stored["spec"]["port"] == example(name)["spec"].get("port", 8080)
    assert stored["spec"]["progressDeadline"]
    assert stored["spec"]["traffic"]["router"] in ("service", "gatewayAPI")


def test_weights_may_drop_after_a_pause_or_an_analysis(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("basic.yaml")
    manifest["spec"]["strategy"] = {
        "canary": {"steps": [{"setWeight": 50}, {"pause": {"duration": "1m"}}, {"setWeight": 10}]}
    }
    create_md(kube, namespace, manifest)


def test_weights_may_drop_after_an_experiment_and_an_evaluation_may_come_before_it(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("basic.yaml")
    trial = {"weight": 50, "duration": "10m", "metrics": [{"name": "accuracy"}, {"name": "latency"}]}
    steps = [{"evaluation": {"min": 0.9}}, {"setWeight": 60}, {"experiment": trial}, {"setWeight": 10}]
    manifest["spec"]["strategy"] = {"canary": {"steps": steps}}
    stored = create_md(kube, namespace, manifest)
    defaulted = stored["spec"]["strategy"]["canary"]["steps"][2]["experiment"]
    assert (defaulted["confidence"], defaulted["power"]) == (0.95, 0.8)


def test_an_evaluation_step_and_a_job_metric_without_limits_are_admitted(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("basic.yaml")
    manifest["spec"]["strategy"] = {
        "canary": {
            "steps": [{"setWeight": 0}, {"evaluation": {"min": 0.9}}, {"setWeight": 10}, {"analysis": {}}]
        }
    }
    template = {"spec": {"containers": [{"name": "tests", "image": "registry.example/t@sha256:" + "e" * 64}]}}
    manifest["spec"]["analysis"] = {
        "metrics": [{"name": "suite", "provider": "job", "job": {"template": template}}]
    }
    stored = create_md(kube, namespace, manifest)["spec"]
    assert stored["strategy"]["canary"]["steps"][1]["evaluation"] == {
        "min": 0.9,
        "metric": "accuracy",
        "dataset": {},
        "timeout": "10m",
    }
    assert stored["analysis"]["metrics"][0]["job"] == {"template": template, "timeout": "10m"}


def test_a_load_test_is_admitted_with_its_defaults(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("basic.yaml")
    manifest["spec"]["strategy"] = {"canary": {"steps": [{"loadTest": {"rate": 20}}, {"setWeight": 10}]}}
    stored = create_md(kube, namespace, manifest)["spec"]
    assert stored["strategy"]["canary"]["steps"][0]["loadTest"] == {
        "rate": 20,
        "duration": "60s",
        "feedbackRatio": 0,
        "startTimeout": "2m",
    }


def test_set_canary_scale_is_admitted_with_the_gateway_router(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("basic.yaml")
    manifest["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": "fraud"}
    manifest["spec"]["strategy"] = {
        "canary": {"steps": [{"setCanaryScale": {"replicas": 2}}, {"setWeight": 10}, {"pause": {}}]}
    }
    create_md(kube, namespace, manifest)


@pytest.mark.parametrize("rollout", ["surge", "auto"])
def test_blue_green_on_devices_is_admitted_when_surge_or_replace_is_chosen(
    kube: Storage, namespace: str, crd_installed: None, rollout: str
) -> None:
    manifest = example("basic.yaml")
    manifest["spec"]["strategy"] = {"blueGreen": {}}
    manifest["spec"]["accelerator"] = {"type": "coral", "rollout": rollout}
    created = create_md(kube, namespace, manifest)
    assert created["spec"]["accelerator"]["rollout"] == rollout


def test_a_full_pod_overlay_is_admitted_and_stored_as_sent(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("template.yaml")
    overlay = manifest["spec"]["template"]
    overlay["spec"]["containers"][0]["readinessProbe"] = {"tcpSocket": {"port": "http"}, "periodSeconds": 3}
    overlay["spec"]["containers"][0]["envFrom"] = [{"secretRef": {"name": "creds"}}]
    overlay["spec"]["containers"][0]["command"] = ["modelserver"]
    overlay["spec"]["initContainers"] = [{**SIDECAR, "name": "warm", "args": ["--once"]}]
    overlay["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    overlay["spec"]["priorityClassName"] = "inference"
    overlay["spec"]["securityContext"] = {"fsGroup": 2000, "runAsUser": 1000}
    overlay["spec"]["affinity"] = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 100,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"modelship.io/model": "fraud-detector-custom"}},
                    },
                }
            ]
        }
    }
    overlay["spec"]["topologySpreadConstraints"] = [
        {"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway"}
    ]
    created = create_md(kube, namespace, manifest)
    stored = kube.get(md_path(namespace, created["metadata"]["name"]))
    assert stored is not None
    assert stored["spec"]["template"] == overlay  # nothing pruned, nothing defaulted


def test_a_pod_overlay_beside_coral_placement_is_admitted(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    manifest = example("coral.yaml")
    manifest["spec"]["template"] = {
        "spec": {
            "nodeSelector": {"topology.kubernetes.io/zone": "edge-1"},
            "tolerations": [{"key": "edge", "operator": "Exists"}],
            "containers": [
                {"name": "model", "securityContext": {"capabilities": {"add": ["NET_BIND_SERVICE"]}}}
            ],
        }
    }
    create_md(kube, namespace, manifest)


@pytest.mark.parametrize(
    "source",
    [
        {"image": {}},
        {"pvc": {"claimName": "models", "subPath": "fraud/v2", "path": "model.onnx"}},
        {"uri": {"url": "https://models.example/fraud/model.onnx", "secretRef": {"name": "store"}}},
        {"uri": {"url": "s3://models/fraud/v2/model.onnx"}},
        {"uri": {"url": "gs://models/download", "path": "model.onnx"}},
        {"oci": {"reference": "registry.example/models/fraud@" + DIGEST, "path": "model.onnx"}},
    ],
    ids=["image", "pvc", "https", "s3", "gs-with-path", "oci"],
)
def test_each_model_source_kind_is_admitted(
    kube: Storage, namespace: str, crd_installed: None, source: dict[str, Any]
) -> None:
    manifest = example("basic.yaml")
    manifest["spec"]["model"]["source"] = source
    del manifest["spec"]["env"]
    created = create_md(kube, namespace, manifest)
    assert created["spec"]["model"]["source"].keys() == source.keys()
