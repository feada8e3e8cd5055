"""The ModelDeployment API (`modelship.io/v1alpha1`): the one source of truth.

These pydantic models define `spec` and `status`. `modelship.crd` turns them into the
CustomResourceDefinition, so the API server enforces the same shapes, defaults and
rules. Simple formats are OpenAPI constraints; formats that deserve a clear message
and every cross-field rule are CEL `x-kubernetes-validations` attached here with
`Rule` or `cel(...)`. Regex rules are also checked in Python; cross-field CEL rules
are enforced by the API server only (the operator only ever sees admitted objects).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetJsonSchemaHandler
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

GROUP = "modelship.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "ModelDeployment"
PLURAL = "modeldeployments"
SINGULAR = "modeldeployment"
SHORT_NAMES = ["md", "mdep"]

# Object names derived from a ModelDeployment: `<name>-stable`, `<name>-preview`,
# `<name>-<10 hex>` (a revision, also a label value, max 63) must stay DNS labels.
MAX_NAME_LENGTH = 45

# Environment variables the operator sets from the spec; users may not override them.
RESERVED_ENV = ("MODEL_NAME", "MODEL_VERSION", "MODEL_SHA256", "PORT", "HOST", "POD_IP", "FEEDBACK_KEY")


@dataclass(frozen=True)
class Rule:
    """A CEL rule for `x-kubernetes-validations`; `message` should name the field."""

    rule: str
    message: str
    field_path: str | None = None

    def as_schema(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        return out

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.setdefault("x-kubernetes-validations", []).append(self.as_schema())
        return schema


def keyed_by(key: str) -> dict[str, Any]:
    """Schema for a list whose items are unique by `key` (server-side apply merges them by it)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": [key]}


def rules(*items: Rule) -> dict[str, Any]:
    """Model-level rules, for `model_config = ConfigDict(json_schema_extra=rules(...))`."""
    return {"x-kubernetes-validations": [r.as_schema() for r in items]}


def matches(regex: str, message: str) -> tuple[AfterValidator, Rule]:
    """A regex checked by pydantic and by the API server (CEL), with one message."""
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(message)
        return value

    return AfterValidator(check), Rule(f"self.matches('^{regex}$')", message)


DIGEST_RE = r"[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?@sha256:[a-f0-9]{64}"
SHA256_RE = r"[a-f0-9]{64}"
DURATION_RE = r"([0-9]+(ms|s|m|h))+"
QUANTITY_RE = (  # the pattern of core's resource.Quantity
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
DNS_LABEL_RE = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_RE = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

Image = Annotated[
    str,
    Field(max_length=512, description="The serving image, pinned by digest: `<repository>@sha256:<64 hex>`."),
    *matches(
        DIGEST_RE,
        "spec.image must pin the image by digest, as <repository>@sha256:<64 lowercase hex digits>; "
        "tags are mutable and are refused",
    ),
]
Sha256 = Annotated[
    str,
    Field(max_length=64, description="The model artifact's sha256 checksum: 64 lowercase hex digits."),
    *matches(SHA256_RE, "spec.model.sha256 must be exactly 64 lowercase hex digits"),
]


# A Go-style duration; the API server's error names the field, e.g. `spec.analysis.interval: ...`.
Duration = Annotated[
    str,
    Field(max_length=32, description="A duration such as `30s`, `5m` or `1h30m`."),
    *matches(DURATION_RE, "must be a duration such as 30s, 5m or 1h30m"),
]


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> timedelta:
    """`1h30m` -> timedelta; the format `Duration` admits."""
    if not re.fullmatch(DURATION_RE, text):
        raise ValueError(f"not a duration: {text!r}")
    seconds = sum(int(n) * _UNITS[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h)", text))
    return timedelta(seconds=seconds)


def format_duration(length: timedelta) -> str:
    """A length of time as `Duration` writes it: `45s`, `10m`, `1h2m3s` (whole seconds)."""
    hours, rest = divmod(int(length.total_seconds()), 3600)
    parts = [(hours, "h"), *zip(divmod(rest, 60), "ms", strict=True)]
    return "".join(f"{n}{unit}" for n, unit in parts if n) or "0s"


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class _Quantity:
    """Schema of a Kubernetes quantity: int-or-string, like core ResourceRequirements."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {
            "anyOf": [{"type": "integer"}, {"type": "string"}],
            "pattern": QUANTITY_RE,
            "maxLength": 64,
            "x-kubernetes-int-or-string": True,
        }


def _check_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.fullmatch(QUANTITY_RE, value):
        raise ValueError(f"not a Kubernetes quantity: {value!r}")
    return value


Quantity = Annotated[int | str, AfterValidator(_check_quantity), _Quantity]
ResourceList = Annotated[
    dict[Annotated[str, Field(max_length=253)], Quantity],
    Field(max_length=16),
    Rule(
        "self.all(k, k.matches('^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$'))",
        "resource names must be like cpu, memory or vendor.example/device",
    ),
]


# ---- spec.model.source: where the artifact comes from ---------------------------------------

# Where a mounted or fetched model lives in the pod; the serving image's default MODEL_PATH is
# /models/model.joblib, so `path` defaults to model.joblib.
MODEL_DIR = "/models"
DEFAULT_MODEL_FILE = "model.joblib"
MODEL_VOLUME = "modelship-model"  # the pod volume holding it (a name no user volume is likely to have)
# A relative path inside the model volume; no segment starts with '.', so no `..` escapes it.
RELATIVE_PATH_RE = r"[A-Za-z0-9_][A-Za-z0-9._-]*(/[A-Za-z0-9_][A-Za-z0-9._-]*)*"
URI_SCHEME_RE = r"(https|s3|gs)://.+"


def _relative_path(field: str) -> tuple[AfterValidator, Rule]:
    return matches(
        RELATIVE_PATH_RE,
        f"spec.model.source.{field} must be a relative path such as model.joblib or risk/v3/model.onnx "
        "(no leading /, no segment starting with .)",
    )


_MODEL_FILE_DOC = (
    "The model file inside the volume, relative (default model.joblib); its suffix (.joblib, .onnx, "
    ".tflite) tells the server the framework."
)


class ImageSource(_Model):
    """The model is baked into spec.image (at the image's MODEL_PATH): the default."""


class SecretRef(_Model):
    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)]


class PvcSource(_Model):
    """A PersistentVolumeClaim in the namespace, mounted read-only at /models."""

    claim_name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_RE)]
    sub_path: (
        Annotated[
            str,
            Field(max_length=1024, description="A directory of the volume to mount instead of its root."),
            *_relative_path("pvc.subPath"),
        ]
        | None
    ) = None
    path: Annotated[str, Field(max_length=1024, description=_MODEL_FILE_DOC), *_relative_path("pvc.path")] = (
        DEFAULT_MODEL_FILE
    )


class UriSource(_Model):
    """Fetched by an init container (the serving image's `modelserver fetch`) into an emptyDir at /models."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.path) || self.url.matches('^[a-z0-9]+://[^/?#]+/([^?#]*/)?"
                "[A-Za-z0-9_][A-Za-z0-9._-]*([?#].*)?$')",
                "spec.model.source.uri.url must end in the artifact's file name (such as .../model.onnx), "
                "or spec.model.source.uri.path must name the file",
                ".url",
            ),
        )
    )
    url: Annotated[
        str,
        Field(
            min_length=1,
            max_length=2048,
            description="`https://host/path/model.onnx`, `s3://bucket/key` or `gs://bucket/key`.",
        ),
        *matches(URI_SCHEME_RE, "spec.model.source.uri.url must start with https://, s3:// or gs://"),
    ]
    path: (
        Annotated[
            str,
            Field(
                max_length=1024,
                description="The file name the artifact is stored as under /models (default: the URL's "
                "last path segment); its suffix tells the server the framework.",
            ),
            *_relative_path("uri.path"),
        ]
        | None
    ) = None
    secret_ref: SecretRef | None = Field(
        default=None,
        description="A Secret whose keys become the fetch container's environment (envFrom): "
        "FETCH_BEARER_TOKEN, FETCH_CA_CERT, AWS_* or GS_* keys (docs/api.md).",
    )

    @property
    def file(self) -> str:
        """The stored file's path under /models."""
        return self.path or self.url.split("?")[0].split("#")[0].rsplit("/", 1)[-1]


class OciSource(_Model):
    """An OCI image or artifact by digest, mounted read-only at /models as an image volume
    (needs Kubernetes' ImageVolume feature and a runtime that supports it)."""

    reference: Annotated[
        str,
        Field(max_length=512, description="`<repository>@sha256:<64 hex>`."),
        *matches(
            DIGEST_RE,
            "spec.model.source.oci.reference must pin the image or artifact by digest, as "
            "<repository>@sha256:<64 lowercase hex digits>; tags are mutable and are refused",
        ),
    ]
    path: Annotated[str, Field(max_length=1024, description=_MODEL_FILE_DOC), *_relative_path("oci.path")] = (
        DEFAULT_MODEL_FILE
    )


ModelSourceKind = Literal["image", "pvc", "uri", "oci"]


class ModelSource(_Model):
    """Where the artifact comes from: exactly one of image (default), pvc, uri or oci."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "[has(self.image), has(self.pvc), has(self.uri), has(self.oci)].filter(x, x).size() == 1",
                "spec.model.source must set exactly one of image, pvc, uri or oci",
            )
        )
    )
    image: ImageSource | None = None
    pvc: PvcSource | None = None
    uri: UriSource | None = None
    oci: OciSource | None = None

    @property
    def kind(self) -> ModelSourceKind:
        if self.pvc is not None:
            return "pvc"
        if self.uri is not None:
            return "uri"
        if self.oci is not None:
            return "oci"
        return "image"

    @property
    def model_path(self) -> str | None:
        """MODEL_PATH for the server: the file under /models; None for a model baked into the image."""
        file = (
            self.pvc.path if self.pvc else self.uri.file if self.uri else self.oci.path if self.oci else None
        )
        return f"{MODEL_DIR}/{file}" if file else None


class ModelRef(_Model):
    """The model artifact the image serves; passed to the pods as MODEL_NAME, MODEL_VERSION, MODEL_SHA256."""

    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    version: Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    sha256: Sha256
    source: ModelSource | None = Field(
        default=None,
        description="Where the artifact comes from (default: baked into spec.image). The server verifies "
        "it against sha256 before it reports ready, whatever the source.",
    )


class Resources(_Model):
    """Compute resources of the model container, as in a core ResourceRequirements."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
                "quantity(string(self.limits[k])).compareTo(quantity(string(self.requests[k]))) >= 0)",
                "spec.resources.limits must not be lower than spec.resources.requests for the same resource",
                ".limits",
            )
        )
    )
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class EnvVar(_Model):
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
    value: Annotated[str, Field(max_length=4096)] = ""


class Pause(_Model):
    """Hold the rollout: for `duration`, or until resumed when empty."""

    duration: Duration | None = None


class CanaryScale(_Model):
    """Scale the canary independently of its traffic weight."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "[has(self.replicas), has(self.weight), has(self.matchTrafficWeight)]"
                ".filter(x, x).size() == 1",
                "setCanaryScale: set exactly one of replicas, weight or matchTrafficWeight",
            )
        )
    )
    replicas: Annotated[int, Field(ge=0, le=1000)] | None = None
    weight: Annotated[int, Field(ge=0, le=100)] | None = None
    match_traffic_weight: bool | None = None


class StepAnalysis(_Model):
    """Run `spec.analysis` and continue only when it succeeds."""


EvaluationMetric = Literal["accuracy", "mae", "rmse"]  # what `modelserver evaluate` can score


class EvaluationDataset(_Model):
    """The labelled rows: a `uri` with its `sha256`, a file on a PersistentVolumeClaim, or with
    neither the `holdout.json` beside the model in its bundle (docs/analysis.md#offline-evaluation)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.uri) == has(self.sha256)",
                "spec.strategy.canary.steps[].evaluation.dataset: uri and sha256 go together "
                "(a dataset from a URI is verified like a model)",
            ),
            Rule(
                "has(self.claimName) == has(self.path)",
                "spec.strategy.canary.steps[].evaluation.dataset: claimName and path go together",
            ),
            Rule(
                "!has(self.uri) || !has(self.claimName)",
                "spec.strategy.canary.steps[].evaluation.dataset: set uri or claimName, not both",
            ),
        )
    )
    uri: (
        Annotated[
            str,
            Field(max_length=2048, description="`https://...`, `s3://bucket/key` or `gs://bucket/key`."),
            *matches(
                URI_SCHEME_RE,
                "spec.strategy.canary.steps[].evaluation.dataset.uri must start with "
                "https://, s3:// or gs://",
            ),
        ]
        | None
    ) = None
    sha256: (
        Annotated[
            str,
            Field(max_length=64),
            *matches(
                SHA256_RE,
                "spec.strategy.canary.steps[].evaluation.dataset.sha256 must be 64 lowercase hex digits",
            ),
        ]
        | None
    ) = None
    claim_name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_RE)] | None = Field(
        default=None, description="A PersistentVolumeClaim in this namespace, mounted read-only."
    )
    path: (
        Annotated[
            str,
            Field(max_length=1024, description="The dataset file's path in the claim."),
            *matches(
                RELATIVE_PATH_RE,
                "spec.strategy.canary.steps[].evaluation.dataset.path must be a "
                "relative path such as fraud/holdout.json",
            ),
        ]
        | None
    ) = None


class EvaluationStep(_Model):
    """Score the canary on a labelled dataset with the serving image's `modelserver evaluate` in a
    Job, before it gets any traffic; go on only when the score is within the limits."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.min) || has(self.max)",
                "spec.strategy.canary.steps[].evaluation: set min or max "
                "(relative limits alone would pass a canary as bad as stable)",
            ),
            Rule(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "spec.strategy.canary.steps[].evaluation: min must not be greater than max",
                ".min",
            ),
        )
    )
    dataset: EvaluationDataset = EvaluationDataset()
    metric: EvaluationMetric = "accuracy"
    min: float | None = None
    max: float | None = None
    max_drop_vs_stable: Annotated[float, Field(ge=0)] | None = Field(
        default=None, description="Also score the stable revision on the same rows; fail a larger drop."
    )
    max_increase_vs_stable: Annotated[float, Field(ge=0)] | None = None
    timeout: Duration = Field(
        default="10m", description="The Job is stopped, and the evaluation fails, after this."
    )


# What a load test may ask for; `modelserver load` refuses more as well.
MAX_LOAD_RATE = 200
MAX_LOAD_REQUESTS = 100_000
_LOAD_DURATIONS = ("1s", "1h")


def _load_duration(value: str) -> str:
    low, high = (parse_duration(d) for d in _LOAD_DURATIONS)
    if not low <= parse_duration(value) <= high:
        raise ValueError(f"must be from {_LOAD_DURATIONS[0]} to {_LOAD_DURATIONS[1]}, got {value}")
    return value


LoadDuration = Annotated[
    Duration,
    AfterValidator(_load_duration),
    Rule(
        f"duration(self) >= duration('{_LOAD_DURATIONS[0]}') && "
        f"duration(self) <= duration('{_LOAD_DURATIONS[1]}')",
        f"must be from {_LOAD_DURATIONS[0]} to {_LOAD_DURATIONS[1]}",
    ),
]


class LoadTest(_Model):
    """A bounded load against the candidate's own Service (`<name>-canary`, `<name>-preview` for
    blue/green), sent by a Job running the candidate's image as `modelserver load`, so that the
    analysis after it has requests to judge on a quiet service or a preview. The bodies are the
    rows of the bundle's `holdout.json`. It cannot be aimed anywhere else (docs/analysis.md#load-tests)."""

    rate: Annotated[float, Field(gt=0, le=MAX_LOAD_RATE)] = Field(
        default=10, description=f"Requests per second (at most {MAX_LOAD_RATE})."
    )
    duration: LoadDuration = Field(default="60s", description="How long the load runs (1s to 1h).")
    requests: Annotated[int, Field(ge=1, le=MAX_LOAD_REQUESTS)] | None = Field(
        default=None,
        description=f"Requests to send at most; default rate x duration, never above {MAX_LOAD_REQUESTS}.",
    )
    feedback_ratio: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0,
        description="Share of the answered requests whose true labels are sent to /feedback, for the "
        "accuracy template (0 to 1).",
    )
    start_timeout: Duration = Field(
        default="2m",
        description="How long the Job's pod may take to start; a load test not running by then fails.",
    )


HTTP_HEADER_NAME_RE = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"


class HeaderMatch(_Model):
    """One request header a header route matches: its exact value, or a regular expression (the
    gateway's dialect; Traefik's is Go's RE2)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.headerValue) != has(self.regex)",
                "spec.strategy.canary.steps[].setHeaderRoute.match[]: set exactly one of headerValue "
                "or regex",
            )
        )
    )
    header_name: Annotated[str, Field(min_length=1, max_length=256, pattern=HTTP_HEADER_NAME_RE)]
    header_value: Annotated[str, Field(min_length=1, max_length=4096)] | None = None
    regex: Annotated[str, Field(min_length=1, max_length=1024)] | None = None


class HeaderRoute(_Model):
    """Requests whose headers all match go to `<name>-canary`, whatever the weight (an HTTPRoute
    rule of its own). A step without `match` removes the header route of that name."""

    name: Annotated[str, Field(max_length=63, pattern=DNS_LABEL_RE)] = Field(
        description="Names the route; a later step with the same name replaces or (without match) removes it."
    )
    match: Annotated[list[HeaderMatch], Field(min_length=1, max_length=8)] | None = Field(
        default=None, description="Headers a request must all carry (ANDed); absent: remove the route."
    )

    @property
    def shown(self) -> str:
        """The headers as people read them (Events, the plugin): `x-canary: yes and x-user ~ ^qa-`."""
        return " and ".join(
            f"{m.header_name}: {m.header_value}"
            if m.header_value is not None
            else f"{m.header_name} ~ {m.regex}"
            for m in self.match or []
        )


ExperimentMetricName = Literal["accuracy", "latency"]
# The smallest difference an experiment must be able to show, per metric, in its own unit.
DEFAULT_MIN_DETECTABLE_EFFECT: dict[str, float] = {"accuracy": 0.02, "latency": 0.2}


class ExperimentMetric(_Model):
    """One metric an experiment compares between the candidate and the stable revision."""

    name: ExperimentMetricName = Field(
        description="accuracy: feedback rows correct (two-proportion z-test); latency: request durations "
        "(Mann-Whitney U test on the histogram buckets)."
    )
    min_detectable_effect: Annotated[float, Field(gt=0, le=1)] | None = Field(
        default=None,
        description="The smallest difference worth finding: accuracy in points (0.02 = 2 points, the "
        "default), latency as Cliff's delta, P(slower) - P(faster) (default 0.2). No difference is "
        "accepted only when the samples could have shown this one.",
    )


ChallengerImage = Annotated[
    str,
    Field(max_length=512, description="The challenger's serving image, pinned by digest."),
    *matches(
        DIGEST_RE,
        "spec.strategy.canary.steps[].experiment.challenger.image must pin the image by digest, as "
        "<repository>@sha256:<64 lowercase hex digits>",
    ),
]


class Challenger(_Model):
    """A second candidate an experiment compares the spec's candidate with: a revision of the spec's
    pods with this image (and model), run only while the experiment step runs."""

    image: ChallengerImage
    model: ModelRef | None = Field(default=None, description="Its model artifact (default: spec.model).")


class Experiment(_Model):
    """Serve the candidate at a fixed `weight` beside stable (and a `challenger` at the same weight),
    then decide with a statistical test (docs/analysis.md#experiments): worse on any metric aborts,
    too little data to tell pauses, better or equivalent goes on."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.duration) || has(self.minSamples)",
                "spec.strategy.canary.steps[].experiment: set duration, minSamples or both "
                "(when the experiment is decided)",
            ),
            Rule(
                "!has(self.challenger) || !has(self.weight) || self.weight <= 50",
                "spec.strategy.canary.steps[].experiment.weight must be at most 50 with a challenger: "
                "the candidate and the challenger each get it, stable the rest",
                ".weight",
            ),
        )
    )
    weight: Annotated[int, Field(ge=1, le=99)] = Field(
        default=50,
        description="The candidate's share of traffic during the experiment, percent; with a challenger, "
        "the challenger's too (stable gets 100 - 2 x weight).",
    )
    challenger: Challenger | None = Field(
        default=None,
        description="gatewayAPI or istio: compare the candidate with this second candidate instead of "
        "stable; it runs (`<name>-challenger`) only during the step and is never promoted.",
    )
    duration: Duration | None = Field(
        default=None, description="Decide no sooner than this after the weight took effect."
    )
    min_samples: Annotated[int, Field(ge=1, le=100_000_000)] | None = Field(
        default=None,
        description="... and once each revision has this many samples of every metric (feedback rows, "
        "requests).",
    )
    confidence: Annotated[float, Field(ge=0.5, le=0.9999)] = Field(
        default=0.95, description="A difference counts when its two-sided p-value is below 1 - confidence."
    )
    power: Annotated[float, Field(ge=0.5, le=0.99)] = Field(
        default=0.8,
        description="How likely the samples must have been to show a minDetectableEffect for 'no "
        "difference' to pass; below it the experiment is inconclusive.",
    )
    metrics: Annotated[
        list[ExperimentMetric], Field(min_length=1, max_length=2, json_schema_extra=keyed_by("name"))
    ] = Field(default_factory=lambda: [ExperimentMetric(name="accuracy")])


class ShadowStep(_Model):
    """Copy a share of the stable pods' requests to `<name>-canary` and compare its answers with
    theirs; users see only stable's answers (docs/rollouts.md#shadow-traffic)."""

    percent: Annotated[int, Field(ge=0, le=100)] = Field(
        description="Percent of the stable pods' /predict requests copied to the candidate; 0 stops "
        "the shadow."
    )


_EXACTLY_ONE_ACTION = Rule(
    "[has(self.setWeight), has(self.pause), has(self.setCanaryScale), has(self.analysis), "
    "has(self.evaluation), has(self.loadTest), has(self.setHeaderRoute), has(self.experiment), "
    "has(self.shadow)]"
    ".filter(x, x).size() == 1",
    "each spec.strategy.canary.steps[] item must set exactly one of setWeight, pause, setCanaryScale, "
    "analysis, evaluation, loadTest, setHeaderRoute, experiment or shadow",
)


class CanaryStep(_Model):
    model_config = ConfigDict(json_schema_extra=rules(_EXACTLY_ONE_ACTION))
    set_weight: (
        Annotated[int, Field(ge=0, le=100, description="Percent of traffic for the canary.")] | None
    ) = None
    pause: Pause | None = None
    set_canary_scale: CanaryScale | None = None
    analysis: StepAnalysis | None = None
    evaluation: EvaluationStep | None = None
    load_test: LoadTest | None = Field(
        default=None,
        description="Start a load on `<name>-canary`; the step completes once it runs, and the load "
        "goes on beside the next steps (an analysis step) for its duration.",
    )
    set_header_route: HeaderRoute | None = Field(
        default=None,
        description="gatewayAPI or istio: send requests with these headers to `<name>-canary`, at any "
        "weight, until promotion or abort; the step completes once the route shows the rule.",
    )
    experiment: Experiment | None = Field(
        default=None,
        description="A/B test: the candidate at a fixed weight until duration and minSamples are reached, "
        "then a statistical test against stable (or the challenger) decides.",
    )
    shadow: ShadowStep | None = Field(
        default=None,
        description="gatewayAPI or istio: the stable pods copy this percent of their requests to "
        "`<name>-canary` and compare its answers with theirs, until promotion, abort or a later shadow "
        "step; the step completes once the route shows it.",
    )


# A weight may drop only after a checkpoint: a drop with no pause or analysis between
# means the higher weight was served without anyone observing it (pure risk), and in
# practice it is a typo (50 for 5).
_NO_UNOBSERVED_DROP = Rule(
    "self.steps.all(i, s, !has(s.setWeight) || self.steps.all(j, t, j >= i || !has(t.setWeight) || "
    "t.setWeight <= s.setWeight || "
    "self.steps.exists(k, u, k > j && k < i && (has(u.pause) || has(u.analysis) || has(u.experiment)))))",
    "spec.strategy.canary.steps: a setWeight may be lower than an earlier setWeight only with a pause, "
    "analysis or experiment step between them",
    ".steps",
)


# Offline evaluation is the check before live traffic: once users reach the canary, their answers
# (and the analysis of them) are what judge it.
_EVALUATION_BEFORE_TRAFFIC = Rule(
    "self.steps.all(i, s, !has(s.evaluation) || "
    "self.steps.all(j, t, j >= i || ((!has(t.setWeight) || t.setWeight == 0) && !has(t.experiment))))",
    "spec.strategy.canary.steps: an evaluation step must come before any setWeight above 0 or experiment",
    ".steps",
)

# Each header route is a rule of its own in an HTTPRoute, which holds at most 16.
MAX_HEADER_ROUTE_STEPS = 8
_FEW_HEADER_ROUTES = Rule(
    f"self.steps.filter(s, has(s.setHeaderRoute)).size() <= {MAX_HEADER_ROUTE_STEPS}",
    f"spec.strategy.canary.steps: at most {MAX_HEADER_ROUTE_STEPS} setHeaderRoute steps",
    ".steps",
)


class Canary(_Model):
    """Shift traffic to the new revision in steps."""

    model_config = ConfigDict(
        json_schema_extra=rules(_NO_UNOBSERVED_DROP, _EVALUATION_BEFORE_TRAFFIC, _FEW_HEADER_ROUTES)
    )
    steps: Annotated[list[CanaryStep], Field(min_length=1, max_length=32)]
    scale_down_delay: Duration = Field(
        default="30s", description="How long the old stable revision keeps running after a promotion."
    )
    abort_scale_down_delay: Duration = Field(
        default="30s",
        description="How long an aborted canary's pods keep running (with no traffic), for inspection.",
    )


class BlueGreen(_Model):
    """Run the new revision beside the stable one (`<name>-preview`), then switch all traffic at once."""

    auto_promote: bool = True
    preview_replicas: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Replicas of the preview revision; default: spec.replicas."
    )
    scale_down_delay: Duration = "30s"
    auto_promotion_delay: Duration | None = Field(
        default=None, description="With autoPromote: how long the ready preview waits before the switch."
    )
    pre_promotion_analysis: bool = Field(
        default=False, description="Judge the preview with spec.analysis before the switch; failure aborts."
    )
    pre_promotion_load_test: LoadTest | None = Field(
        default=None,
        description="Load `<name>-preview` once it is ready: the pre-promotion analysis starts once the "
        "load runs, and judges its requests; a load test that fails before the analysis passed aborts.",
    )
    post_promotion_analysis: bool = Field(
        default=False,
        description="Judge the new revision with spec.analysis after the switch, while the old one stays "
        "up; failure switches back.",
    )
    abort_scale_down_delay: Duration = Field(
        default="30s",
        description="How long an aborted preview's pods keep running (with no traffic), for inspection.",
    )


class Strategy(_Model):
    """How a new revision replaces the stable one: exactly one of `canary` or `blueGreen`."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.canary) != has(self.blueGreen)",
                "spec.strategy must set exactly one of canary or blueGreen",
            )
        )
    )
    canary: Canary | None = None
    blue_green: BlueGreen | None = None

    @property
    def chosen(self) -> Canary | BlueGreen:
        """The one strategy set (admission refuses none and both)."""
        chosen = self.canary or self.blue_green
        assert chosen is not None, "spec.strategy must set exactly one of canary or blueGreen"
        return chosen

    @property
    def steps(self) -> list[CanaryStep]:
        """The canary's steps; none for blue/green."""
        return self.canary.steps if self.canary is not None else []


class ParentRef(_Model):
    """A Gateway (or listener) the HTTPRoute modelship creates attaches to, as in Gateway API."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL_RE)] | None = None
    section_name: Annotated[str, Field(max_length=253)] | None = None
    group: Annotated[str, Field(max_length=253)] | None = None
    kind: Annotated[str, Field(max_length=63)] | None = None


# A cookie name is an RFC 6265 token; kept to letters, digits, `_` and `-` so that it reads the
# same, unescaped, inside the regular expression a session rule matches the Cookie header with.
COOKIE_NAME_RE = r"^[A-Za-z0-9_-]+$"
DEFAULT_SESSION_COOKIE = "modelship-revision"
DEFAULT_SESSION_HEADER = "x-modelship-revision"


class SessionCookie(_Model):
    """Sticky sessions by cookie: answers set `<name>=<revision>`, requests carrying it go back there."""

    name: Annotated[str, Field(min_length=1, max_length=64, pattern=COOKIE_NAME_RE)] = DEFAULT_SESSION_COOKIE


class SessionHeader(_Model):
    """Sticky sessions by header: answers carry `<name>: <revision>`; a client that sends it back
    reaches that revision."""

    name: Annotated[str, Field(min_length=1, max_length=256, pattern=HTTP_HEADER_NAME_RE)] = (
        DEFAULT_SESSION_HEADER
    )


class SessionAffinity(_Model):
    """A client stays on the revision that first served it while weights move; new sessions follow
    the weights (docs/rollouts.md#sticky-sessions)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.cookie) != has(self.header)",
                "spec.traffic.sessionAffinity: set exactly one of cookie or header",
            )
        )
    )
    cookie: SessionCookie | None = None
    header: SessionHeader | None = None


# An HTTP route's name in a VirtualService (Istio allows any string; modelship's own are DNS labels).
_ISTIO_ROUTE_NAME = Annotated[str, Field(min_length=1, max_length=253)]
# A host or gateway as Istio writes them: a name, a FQDN, `*.example.com`, `namespace/gateway`, `mesh`.
_ISTIO_HOST = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^\S+$")]


class VirtualServiceRef(_Model):
    """The Istio VirtualService the `istio` router sets weights in (docs/rollouts.md#istio)."""

    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_RE)] = Field(
        description="The VirtualService, in the ModelDeployment's namespace."
    )
    routes: Annotated[list[_ISTIO_ROUTE_NAME], Field(min_length=1, max_length=8)] | None = Field(
        default=None,
        description="The names of its HTTP routes whose destinations modelship sets (each must exist); "
        "default: the first HTTP route with a destination `<name>`, `<name>-stable` or `<name>-canary`.",
    )
    hosts: Annotated[list[_ISTIO_HOST], Field(min_length=1, max_length=16)] | None = Field(
        default=None,
        description="When the VirtualService does not exist: modelship creates it (owned by the "
        "ModelDeployment) with these hosts; an existing one keeps its own.",
    )
    gateways: Annotated[list[_ISTIO_HOST], Field(min_length=1, max_length=8)] | None = Field(
        default=None,
        description="The gateways of a VirtualService modelship creates (default: none, which Istio reads "
        "as `mesh`, the sidecars).",
    )


class Traffic(_Model):
    """How traffic reaches revisions: `service` (replica ratio), `gatewayAPI` (HTTPRoute weights) or
    `istio` (VirtualService destination weights)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "(self.router == 'gatewayAPI') == has(self.httpRoute)",
                "spec.traffic.httpRoute is required when router is gatewayAPI, and only then",
                ".httpRoute",
            ),
            Rule(
                "(self.router == 'istio') == has(self.virtualService)",
                "spec.traffic.virtualService is required when router is istio, and only then",
                ".virtualService",
            ),
            # Sessions are kept by route rules: the service router has no route to put them in.
            Rule(
                "!has(self.sessionAffinity) || self.router != 'service'",
                "spec.traffic.sessionAffinity needs spec.traffic.router gatewayAPI or istio: sessions are "
                "kept by HTTPRoute rules or VirtualService routes",
                ".sessionAffinity",
            ),
        )
    )
    router: Literal["service", "gatewayAPI", "istio"] = "service"
    virtual_service: VirtualServiceRef | None = Field(
        default=None, description="istio: the VirtualService whose HTTP route weights modelship sets."
    )
    http_route: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_RE)] | None = None
    parent_refs: Annotated[list[ParentRef], Field(max_length=8)] | None = Field(
        default=None,
        description="gatewayAPI: where the HTTPRoute attaches when modelship creates it (when it does not "
        "exist yet); an existing route keeps its own.",
    )
    session_affinity: SessionAffinity | None = Field(
        default=None,
        description="gatewayAPI or istio: keep each client on the revision that first served it, by "
        "cookie or header; new sessions follow the weights.",
    )


Vector = Annotated[list[float], Field(min_length=1, max_length=1024)]


class SmokeTest(_Model):
    """Requests sent to the new revision before it gets any traffic; each output must match."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "size(self.inputs) == size(self.expected)",
                "spec.smokeTest.inputs and spec.smokeTest.expected must have the same length",
                ".expected",
            )
        )
    )
    inputs: Annotated[list[Vector], Field(min_length=1, max_length=32)]
    expected: Annotated[list[Vector], Field(min_length=1, max_length=32)]
    tolerance: Annotated[float, Field(ge=0)] = 1e-6


MetricTemplate = Literal[
    "error-rate",
    "latency-p99",
    "latency-p95",
    "latency-p50",
    "accuracy",
    "confidence-mean",
    "prediction-agreement",
    "prediction-mean-abs-difference",
    "confidence-shift",
]


# The JSONPath subset of web metrics (docs/analysis.md#webhook-metrics): `$`, or a first key, then
# `.key`, `[n]` and `['key']` steps, optionally in `{}` as Argo Rollouts writes it. Written so that
# Python and RE2 (the API server's CEL) read it alike; `core.analysis.jsonpath` walks these steps.
JSONPATH_KEY_RE = r"[A-Za-z_][A-Za-z0-9_-]*"
JSONPATH_STEP_RE = rf"\.{JSONPATH_KEY_RE}|\[[0-9]+\]|\['[^']+'\]"
_JSONPATH_BARE = rf"(\$|{JSONPATH_KEY_RE})({JSONPATH_STEP_RE})*"
JSONPATH_RE = rf"\{{{_JSONPATH_BARE}\}}|{_JSONPATH_BARE}"
_JSONPATH_MESSAGE = (
    "spec.analysis.metrics[].web.jsonPath must be $ or a key followed by .key, [n] or ['key'] "
    "steps, e.g. $.data.accuracy or {$.results[0]['error rate']}"
)


def _jsonpath(value: str) -> str:
    if not re.fullmatch(JSONPATH_RE, value):
        raise ValueError(_JSONPATH_MESSAGE)
    return value


JsonPath = Annotated[
    str,
    Field(max_length=256, description="Where the value is in the JSON answer, e.g. `$.data.accuracy`."),
    AfterValidator(_jsonpath),
    Rule(f'self.matches(r"^({JSONPATH_RE})$")', _JSONPATH_MESSAGE),  # a raw CEL string: `\` as is
]


class SecretKeyRef(_Model):
    """One key of a Secret in the ModelDeployment's namespace; the operator needs `get` on it."""

    name: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_RE)]
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")]


class HeaderSource(_Model):
    secret_key_ref: SecretKeyRef


class WebHeader(_Model):
    """An HTTP header: a literal `value`, or one read from a Secret (never logged)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "has(self.value) != has(self.valueFrom)",
                "spec.analysis.metrics[].web.headers[]: set exactly one of value or valueFrom",
            )
        )
    )
    name: Annotated[str, Field(min_length=1, max_length=256, pattern=r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")]
    value: Annotated[str, Field(max_length=4096)] | None = None
    value_from: HeaderSource | None = None


class WebMetric(_Model):
    """An HTTP endpoint that answers JSON; `jsonPath` picks the value (docs/analysis.md)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "self.url.matches('^https?://[^ ]+$')",
                "spec.analysis.metrics[].web.url must be an http:// or https:// URL",
                ".url",
            ),
            Rule(
                "!has(self.body) || self.method == 'POST'",
                "spec.analysis.metrics[].web.body needs method: POST",
                ".body",
            ),
        )
    )
    url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(
        description="`{{revision}}`, `{{stable_revision}}`, `{{name}}`, `{{namespace}}` are replaced."
    )
    method: Literal["GET", "POST"] = "GET"
    headers: Annotated[list[WebHeader], Field(max_length=16, json_schema_extra=keyed_by("name"))] = []
    body: Annotated[str, Field(max_length=16384)] | None = Field(
        default=None, description="Sent with POST; the same variables as `url` are replaced."
    )
    json_path: JsonPath
    timeout: Duration = "10s"


def _free_form(schema: dict[str, Any]) -> None:
    """Any JSON object, kept as written (a structural schema allows no `additionalProperties: true`)."""
    schema.pop("additionalProperties", None)
    schema["x-kubernetes-preserve-unknown-fields"] = True


class JobMetric(_Model):
    """A Kubernetes Job run for each measurement (docs/analysis.md#job-metrics): exit 0 passes, or
    the `value` it writes to its termination message is judged by the metric's limits."""

    template: Annotated[dict[str, Any], Field(json_schema_extra=_free_form)] = Field(
        description="A pod template (`metadata`, `spec` with `containers`), as in a Job's "
        "`spec.template`; checked by the API server when the Job is created."
    )
    timeout: Duration = Field(
        default="10m", description="The Job is stopped, and the measurement fails, after this."
    )


class Metric(_Model):
    """One measurement: a builtin `template` or a custom PromQL `query` (provider `prometheus`),
    an HTTP endpoint's answer (`provider: web`), or a Job's (`provider: job`), judged by min/max."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "(has(self.template) ? 1 : 0) + (has(self.query) ? 1 : 0) + (has(self.web) ? 1 : 0) "
                "+ (has(self.job) ? 1 : 0) == 1",
                "spec.analysis.metrics[]: set exactly one of template, query, web or job",
            ),
            Rule(
                "has(self.web) == (self.provider == 'web')",
                "spec.analysis.metrics[]: provider web goes with web: {url, jsonPath}, and web with "
                "provider: web (template and query are provider: prometheus, the default)",
                ".provider",
            ),
            Rule(
                "has(self.job) == (self.provider == 'job')",
                "spec.analysis.metrics[]: provider job goes with job: {template}, and job with provider: job",
                ".provider",
            ),
            Rule(
                "has(self.job) || has(self.min) || has(self.max)",
                "spec.analysis.metrics[]: set min or max "
                "(relative limits alone would pass a canary as bad as stable; a job metric may have "
                "neither: its exit code decides)",
            ),
            Rule(
                "!has(self.min) || !has(self.max) || self.min <= self.max",
                "spec.analysis.metrics[]: min must not be greater than max",
                ".min",
            ),
        )
    )
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_RE)]
    provider: Literal["prometheus", "web", "job"] = "prometheus"
    template: MetricTemplate | None = None
    query: (
        Annotated[
            str, Field(min_length=1, max_length=4096, description="PromQL; `{{revision}}` is replaced.")
        ]
        | None
    ) = None
    min: float | None = None
    max: float | None = None
    max_drop_vs_stable: Annotated[float, Field(ge=0)] | None = None
    max_increase_vs_stable: Annotated[float, Field(ge=0)] | None = None
    web: WebMetric | None = None
    job: JobMetric | None = None
    dry_run: bool = False


class PrometheusConnection(_Model):
    """The Prometheus analysis queries; without it, the operator's `--prometheus-address`."""

    address: Annotated[str, Field(max_length=2048)] = Field(
        description="Base URL, e.g. `http://prometheus.monitoring.svc:9090`."
    )
    timeout: Duration = "5s"
    auth_secret: Annotated[str, Field(max_length=253, pattern=DNS_SUBDOMAIN_RE)] | None = Field(
        default=None,
        description="A Secret in this namespace with `token`, or `username` and `password`, and optionally "
        "`ca.crt`; the operator needs `get` on it.",
    )
    insecure_skip_verify: bool = False

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "self.address.matches('^https?://[^ ]+$')",
                "spec.analysis.prometheus.address must be an http:// or https:// URL",
                ".address",
            )
        )
    )


class BackgroundAnalysis(_Model):
    """Measure all through the canary, from `startingStep` (0-based) until promotion."""

    starting_step: Annotated[int, Field(ge=0, le=31)] = 0


class Analysis(_Model):
    """Prometheus checks run by `analysis` steps, in the background, and around blue/green switches.

    Every `interval` each metric is measured and judged Successful, Failed, Inconclusive or
    Error (docs/analysis.md). A run succeeds once each metric (not `dryRun`) has `count`
    successful measurements; it fails when one metric has more than `failureLimit` failed
    ones, errs after more than `consecutiveErrorLimit` errors in a row, becomes Inconclusive
    after more than `inconclusiveLimit` inconclusive ones in a row, and rolls back once
    Prometheus has been unreachable for `unreachableTimeout`.
    """

    prometheus: PrometheusConnection | None = None
    interval: Duration = "30s"
    initial_delay: Duration = Field(default="0s", description="Wait this long before the first interval.")
    count: Annotated[int, Field(ge=1, le=100)] = Field(
        default=3, description="Successful measurements per metric that pass an analysis step."
    )
    window: Duration | None = Field(
        default=None,
        description="Range of the builtin templates' rate() (`{{window}}`); default: the interval, at "
        "least 1m.",
    )
    failure_limit: Annotated[int, Field(ge=0, le=100)] = 0
    inconclusive_limit: Annotated[int, Field(ge=0, le=100)] = 3
    consecutive_error_limit: Annotated[int, Field(ge=0, le=100)] = 4
    unreachable_timeout: Duration = Field(
        default="10m",
        description="How long a run waits, paused, for an unreachable Prometheus (from its first "
        "unreachable measurement) before it rolls back; unreachable measurements do not count toward "
        "inconclusiveLimit.",
    )
    no_data: Literal["inconclusive", "fail", "pass"] = Field(
        default="inconclusive",
        description="How a measurement with no value, or with fewer than minRequests requests, is judged.",
    )
    min_requests: Annotated[int, Field(ge=0)] | None = Field(
        default=None,
        description="A floor: requests the revision must have answered in the window to be judged. "
        "Default: none for the rate templates (error-rate, accuracy, latency-pNN with a max), whose "
        "statistics say when there is enough; 50 for the other metrics.",
    )
    confidence: Annotated[float, Field(ge=0.5, le=0.9999)] = Field(
        default=0.95,
        description="How sure a run must be before a rate metric (error rate, accuracy, a latency "
        "quantile's tail) fails a canary: a good canary is failed by chance with probability at most "
        "1 - confidence per run, however often it looks (docs/analysis.md, fast failing).",
    )
    scrape_interval: Duration | None = Field(
        default=None,
        description="How often Prometheus scrapes the pods; default: read from Prometheus' target "
        "metadata. Runs look at this cadence in their first window and near a limit.",
    )
    background: BackgroundAnalysis | None = None
    metrics: Annotated[
        list[Metric],
        Field(
            min_length=1,
            max_length=16,
            json_schema_extra=keyed_by("name"),
        ),
    ]


class Toleration(_Model):
    key: Annotated[str, Field(max_length=253)] | None = None
    operator: Literal["Exists", "Equal"] = "Equal"
    value: Annotated[str, Field(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    toleration_seconds: int | None = None


# How a cluster advertises a Coral Edge TPU node by default: one source of truth for the
# operator's defaults, the docs and the local cluster's fake nodes (hack/devcluster/nodes.py).
CORAL_LABEL = "modelship.io/accelerator"
CORAL_LABEL_VALUE = "coral"
CORAL_TAINT_KEY = "modelship.io/accelerator"
CORAL_RESOURCE = "squat.ai/coral"  # what generic-device-plugin publishes when configured for the Coral
# Node Feature Discovery labels (nfd-worker's defaults: USB `usb-<class>_<vendor>_<device>.present`
# for classes 0e/ef/fe/ff, PCI `pci-<class>_<vendor>.present` for its class whitelist). A USB Coral
# enumerates as 1a6e:089a, class fe, until the runtime loads its firmware (NFD's own docs use this
# label as their example), then as 18d1:9302, class ff: match either.
# A PCIe/M.2 Coral is class 0880 vendor 1ac1; 0880 is not in NFD's default PCI class list.
NFD_USB_LABELS = (
    "feature.node.kubernetes.io/usb-fe_1a6e_089a.present",
    "feature.node.kubernetes.io/usb-ff_18d1_9302.present",
)
NFD_PCIE_LABELS = ("feature.node.kubernetes.io/pci-0880_1ac1.present",)
HOST_DEVICE_PATHS = {"usb": "/dev/bus/usb", "pcie": "/dev/apex_0"}

LabelKey = Annotated[str, Field(min_length=1, max_length=317)]
LabelValue = Annotated[str, Field(max_length=63)]


class AcceleratorResource(_Model):
    """The extended resource a device plugin publishes for the device."""

    name: Annotated[str, Field(max_length=253)] = CORAL_RESOURCE
    count: Annotated[int, Field(ge=1, le=8)] = 1


class NodeSelection(_Model):
    """Which nodes hold the device: a preset, or your own labels (required node affinity)."""

    preset: Literal["modelship", "nfd"] | None = Field(
        default=None,
        description="modelship (default): `modelship.io/accelerator=coral`; nfd: Node Feature Discovery's "
        "USB (1a6e:089a or 18d1:9302) or PCI (0880_1ac1) labels, by spec.accelerator.interface.",
    )
    match_labels: Annotated[dict[LabelKey, LabelValue], Field(min_length=1, max_length=16)] | None = Field(
        default=None, description="Nodes carrying all these labels; overrides the preset."
    )


class Accelerator(_Model):
    """Run on the nodes that hold an Edge TPU; rollouts account for the free devices (docs/coral.md)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "!has(self.nodeSelection) || !(has(self.nodeSelection.preset) && "
                "has(self.nodeSelection.matchLabels))",
                "spec.accelerator.nodeSelection: set preset or matchLabels, not both",
                ".nodeSelection",
            ),
        )
    )
    type: Literal["coral"]
    interface: Literal["usb", "pcie"] = "usb"
    node_selection: NodeSelection | None = None
    resource: AcceleratorResource = AcceleratorResource()
    tolerations: Annotated[list[Toleration], Field(max_length=16)] | None = Field(
        default=None,
        description="Default: tolerate `modelship.io/accelerator=coral:NoSchedule`; `[]` tolerates nothing.",
    )
    fallback: Literal["none", "cpu"] = Field(
        default="none", description="cpu: run a revision on CPU nodes when the devices cannot hold it."
    )
    host_path: bool = Field(
        default=False,
        description="Opt in, only without a device plugin: mount /dev/bus/usb (usb) or /dev/apex_0 (pcie) "
        "from the host into a privileged container; no resource is requested.",
    )
    # Not part of the pods: `modelship.core.revisions` leaves these out of a revision's template.
    rollout: Literal["auto", "surge"] | None = Field(
        default=None,
        description="auto (default): add canary pods beside stable ones when devices are free, else "
        "replace stable pods one at a time; surge: never replace, stop with InsufficientAccelerator. "
        "Blue/green must set it: surge confirms devices for both colours, auto accepts replace mode.",
    )
    min_available: Annotated[int, Field(ge=1, le=1000)] | None = Field(
        default=None, description="Ready pods kept serving while a device is freed (default 1)."
    )


# ---- spec.template: the pod overlay ------------------------------------------------------

MODEL_CONTAINER = "model"  # the container modelship runs spec.image in; `spec.template` merges into it
FETCH_CONTAINER = "fetch-model"  # the init container of a `uri` model source (core/sources.py)
# Volumes modelship adds itself (writable /tmp; the Coral device with hostPath).
RESERVED_VOLUMES = ("tmp", "edgetpu", MODEL_VOLUME)
# Marks `spec.template.spec` in the JSON schema: `modelship.crd` puts Kubernetes' own PodSpec
# schema there (generated by `modelship.podschema`) with the rules of `POD_SPEC_RULES`.
POD_SPEC_MARK = "x-modelship-pod-spec"
# The node labels a Coral placement selects on; with spec.accelerator the overlay may not.
CORAL_NODE_LABELS = (CORAL_LABEL, *NFD_USB_LABELS, *NFD_PCIE_LABELS)

_IS_MODEL = f"self.name == '{MODEL_CONTAINER}'"


def _mounts_name_volumes(kind: str) -> Rule:
    """A mount of a volume the pod will not have makes the Deployment invalid: refuse it here."""
    return Rule(
        f"!has(self.{kind}) || self.{kind}.all(c, !has(c.volumeMounts) || c.volumeMounts.all(m, "
        f"m.name in {list(RESERVED_VOLUMES)} || "
        "(has(self.volumes) && self.volumes.exists(v, v.name == m.name))))",
        f"spec.template.spec.{kind}[].volumeMounts[].name must name a volume of spec.template.spec.volumes "
        f"(or modelship's {', '.join(RESERVED_VOLUMES)})",
        f".{kind}",
    )


def _restricted_container(kind: str) -> Rule:
    """The restricted Pod Security Standard for one container's securityContext: the overlay may
    tighten modelship's defaults or set what the profile allows (user, group, SELinux), never loosen."""
    return Rule(
        "(!has(self.privileged) || !self.privileged) && "
        "(!has(self.allowPrivilegeEscalation) || !self.allowPrivilegeEscalation) && "
        "(!has(self.runAsNonRoot) || self.runAsNonRoot) && (!has(self.runAsUser) || self.runAsUser != 0) && "
        "(!has(self.capabilities) || ((!has(self.capabilities.add) || "
        "self.capabilities.add.all(c, c == 'NET_BIND_SERVICE')) && "
        "(!has(self.capabilities.drop) || 'ALL' in self.capabilities.drop))) && "
        "(!has(self.seccompProfile) || self.seccompProfile.type != 'Unconfined') && "
        "(!has(self.windowsOptions) || !has(self.windowsOptions.hostProcess) || "
        "!self.windowsOptions.hostProcess)",
        f"spec.template.spec.{kind}[].securityContext must stay within the restricted Pod Security "
        "Standard: no privileged, allowPrivilegeEscalation, runAsNonRoot false, runAsUser 0, capabilities "
        "beyond adding NET_BIND_SERVICE (drop must keep ALL), or Unconfined seccomp",
    )


_RESTRICTED_POD = Rule(
    "(!has(self.runAsNonRoot) || self.runAsNonRoot) && (!has(self.runAsUser) || self.runAsUser != 0) && "
    "(!has(self.seccompProfile) || self.seccompProfile.type != 'Unconfined')",
    "spec.template.spec.securityContext must stay within the restricted Pod Security Standard: "
    "no runAsNonRoot false, runAsUser 0 or Unconfined seccomp",
)
# Rules on the parts of `spec.template.spec`, by their path in its schema ("" is the PodSpec).
POD_SPEC_RULES: dict[str, tuple[Rule, ...]] = {
    "": (
        Rule(
            "!has(self.initContainers) || !has(self.containers) || "
            "self.initContainers.all(i, !self.containers.exists(c, c.name == i.name))",
            "spec.template.spec.initContainers[].name must differ from every containers[].name: the names "
            "of a pod's containers are unique",
            ".initContainers",
        ),
        _mounts_name_volumes("containers"),
        _mounts_name_volumes("initContainers"),
    ),
    "containers[]": (
        Rule(
            f"!({_IS_MODEL}) || !has(self.image)",
            "spec.template.spec.containers[].image must not be set on the model container: modelship runs "
            "spec.image, pinned by digest",
        ),
        Rule(
            f"self.name != '{FETCH_CONTAINER}'",
            f"spec.template.spec.containers[].name may not be {FETCH_CONTAINER}: modelship's model download",
        ),
        Rule(
            f"{_IS_MODEL} || has(self.image)",
            "spec.template.spec.containers[].image is required for a sidecar (a container not named model)",
        ),
        Rule(
            f"!({_IS_MODEL}) || (!has(self.ports) && !has(self.resources))",
            "spec.template.spec.containers[].ports and .resources must not be set on the model container: "
            "modelship sets them from spec.port and spec.resources",
        ),
        Rule(
            f"!({_IS_MODEL}) || !has(self.env) || self.env.all(e, !(e.name in {list(RESERVED_ENV)}))",
            "spec.template.spec.containers[].env may not set "
            + ", ".join(RESERVED_ENV)
            + " on the model container: modelship sets them from spec.model, spec.port and the pod",
        ),
        Rule(
            f"!({_IS_MODEL}) || !has(self.volumeMounts) || "
            "self.volumeMounts.all(m, m.mountPath != '/tmp' && m.mountPath != '/tmp/')",
            "spec.template.spec.containers[].volumeMounts[].mountPath may not be /tmp on the model "
            "container: modelship mounts its writable tmp volume there",
        ),
    ),
    "initContainers[]": (
        Rule("has(self.image)", "spec.template.spec.initContainers[].image is required"),
        Rule(
            f"!(self.name in {[MODEL_CONTAINER, FETCH_CONTAINER]})",
            f"spec.template.spec.initContainers[].name may not be {MODEL_CONTAINER} or {FETCH_CONTAINER}: "
            "modelship's own containers",
        ),
    ),
    "containers[].securityContext": (_restricted_container("containers"),),
    "initContainers[].securityContext": (_restricted_container("initContainers"),),
    "securityContext": (_RESTRICTED_POD,),
    "volumes[]": (
        Rule(
            f"!(self.name in {list(RESERVED_VOLUMES)})",
            "spec.template.spec.volumes[].name may not be " + " or ".join(RESERVED_VOLUMES) + ": modelship's "
            "own volumes (writable /tmp, the Coral device, spec.model.source)",
        ),
    ),
}

_NOT_MODELSHIP_KEYS = Rule(
    "self.all(k, !k.startsWith('modelship.io/'))",
    "spec.template.metadata: labels and annotations may not use the modelship.io/ prefix: modelship sets "
    "its revision labels and placement there",
)


class PodTemplateMetadata(_Model):
    """Labels and annotations added to the pods (modelship's own `modelship.io/` keys are refused)."""

    labels: Annotated[dict[LabelKey, LabelValue], Field(max_length=64), _NOT_MODELSHIP_KEYS] | None = None
    annotations: (
        Annotated[
            dict[LabelKey, Annotated[str, Field(max_length=65536)]], Field(max_length=64), _NOT_MODELSHIP_KEYS
        ]
        | None
    ) = None


class PodTemplate(_Model):
    """A PodTemplateSpec-shaped overlay merged into every revision's pods (docs/api.md, spec.template).

    `spec` is a subset of a core PodSpec, validated by Kubernetes' own schema in the CRD; the
    container named `model` is merged into modelship's, any other is a sidecar."""

    metadata: PodTemplateMetadata | None = None
    spec: Annotated[dict[str, Any], Field(json_schema_extra={POD_SPEC_MARK: True})] | None = None

    def containers(self) -> list[dict[str, Any]]:
        return list((self.spec or {}).get("containers") or [])

    def model_container(self) -> dict[str, Any]:
        """The overlay's entry for the model container ({} when it has none)."""
        return next((c for c in self.containers() if c.get("name") == MODEL_CONTAINER), {})

    def sidecars(self) -> list[dict[str, Any]]:
        return [c for c in self.containers() if c.get("name") != MODEL_CONTAINER]


def _template_spec(path: str) -> str:
    """CEL: `has()` down to `self.template.spec.<path>`, for a spec-level rule."""
    return "has(self.template) && has(self.template.spec) && has(self.template.spec." + path + ")"


# The Coral placement wins: with spec.accelerator, modelship's required node affinity and its
# taint toleration decide the nodes; an overlay that also selected on them could only conflict
# (or silently break fallback: cpu).
_CORAL_NODE_SELECTOR = Rule(
    "!has(self.accelerator) || !(" + _template_spec("nodeSelector") + ") || "
    "self.template.spec.nodeSelector.all(k, !(k in " + str(list(CORAL_NODE_LABELS)) + ") && "
    "(!has(self.accelerator.nodeSelection) || !has(self.accelerator.nodeSelection.matchLabels) || "
    "!(k in self.accelerator.nodeSelection.matchLabels)))",
    "spec.template.spec.nodeSelector may not select on the accelerator's node labels with spec.accelerator: "
    "modelship places the pods on the device nodes (set spec.accelerator.nodeSelection)",
    ".template.spec.nodeSelector",
)
_CORAL_AFFINITY = Rule(
    "!has(self.accelerator) || !(" + _template_spec("affinity") + ") || "
    "!has(self.template.spec.affinity.nodeAffinity) || "
    "!has(self.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution)",
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution may not be set "
    "with spec.accelerator: modelship requires the device nodes (set spec.accelerator.nodeSelection; "
    "preferred terms are fine)",
    ".template.spec.affinity",
)
# A mounted or fetched model sits at MODEL_DIR and MODEL_PATH points at it: the overlay may not move either.
_SOURCE_OWNS_MODEL_DIR = Rule(
    "!has(self.model.source) || has(self.model.source.image) || !(" + _template_spec("containers") + ") || "
    f"self.template.spec.containers.all(c, c.name != '{MODEL_CONTAINER}' || "
    "((!has(c.env) || c.env.all(e, e.name != 'MODEL_PATH')) && (!has(c.volumeMounts) || "
    f"c.volumeMounts.all(m, m.mountPath != '{MODEL_DIR}' && m.mountPath != '{MODEL_DIR}/'))))",
    f"spec.template.spec.containers[] (model) may not set MODEL_PATH or mount at {MODEL_DIR} when "
    "spec.model.source is pvc, uri or oci: modelship mounts the model there",
    ".template.spec.containers",
)
_CORAL_TOLERATION = Rule(
    "!has(self.accelerator) || !(" + _template_spec("tolerations") + ") || "
    f"self.template.spec.tolerations.all(t, !has(t.key) || t.key != '{CORAL_TAINT_KEY}')",
    f"spec.template.spec.tolerations may not tolerate {CORAL_TAINT_KEY} with spec.accelerator: "
    "set spec.accelerator.tolerations",
    ".template.spec.tolerations",
)


_ANALYSIS_NEEDED = Rule(
    "has(self.analysis) || ((!has(self.strategy.canary) || "
    "!self.strategy.canary.steps.exists(s, has(s.analysis))) && (!has(self.strategy.blueGreen) || "
    "(!self.strategy.blueGreen.prePromotionAnalysis && !self.strategy.blueGreen.postPromotionAnalysis)))",
    "spec.analysis is required when a canary step is an analysis step or blue/green asks for "
    "pre- or post-promotion analysis",
    ".analysis",
)
_BACKGROUND_STEP = Rule(
    "!has(self.analysis) || !has(self.analysis.background) || (has(self.strategy.canary) && "
    "self.analysis.background.startingStep < size(self.strategy.canary.steps))",
    "spec.analysis.background needs a canary strategy, and startingStep must be the index of one of its "
    "steps",
    ".analysis.background",
)
# With a mounted or fetched model, MODEL_PATH is where modelship put it.
_MODEL_PATH_FROM_SOURCE = Rule(
    "!has(self.model.source) || has(self.model.source.image) || !has(self.env) || "
    "self.env.all(e, e.name != 'MODEL_PATH')",
    "spec.env may not set MODEL_PATH when spec.model.source is pvc, uri or oci: modelship points the server "
    "at the mounted model (set spec.model.source.*.path)",
    ".env",
)
_NO_RESERVED_ENV = Rule(
    "!has(self.env) || self.env.all(e, !(e.name in " + str(list(RESERVED_ENV)) + "))",
    "spec.env may not set "
    + ", ".join(RESERVED_ENV)
    + ": modelship sets them from spec.model, spec.port and the pod",
    ".env",
)


# CEL cannot see free devices; blue/green wants a device per pod for both colours at once, and
# replace mode takes devices from the colour that serves, so the user chooses explicitly.
_BLUE_GREEN_DEVICES = Rule(
    "!has(self.accelerator) || !has(self.strategy) || !has(self.strategy.blueGreen) || "
    "has(self.accelerator.rollout)",
    "spec.accelerator.rollout must be set with strategy.blueGreen: surge if the cluster has devices "
    "for both colours, or auto to accept replace mode (the serving colour gives devices to the preview)",
    ".accelerator",
)

# With the service router the canary's replicas *are* its traffic share; scaling them apart from
# the weight would silently change the traffic, so only a router with real weights may.
_SCALE_WHY = (
    "needs spec.traffic.router gatewayAPI or istio: with router service the canary pods are its traffic share"
)
_CANARY_SCALE_NEEDS_ROUTE = Rule(
    "!has(self.strategy.canary) || (has(self.traffic) && has(self.traffic.router) && "
    "self.traffic.router != 'service') || !self.strategy.canary.steps.exists(s, has(s.setCanaryScale))",
    f"spec.strategy.canary.steps[].setCanaryScale {_SCALE_WHY}",
    # No messageExpression naming the step's index: the API server refuses its estimated cost
    # (over 100x the CRD's CEL budget, with steps capped at 32).
    ".strategy.canary.steps",
)
# A header route is a rule of an HTTPRoute or a VirtualService: the service router has no route for it.
_HEADER_ROUTE_NEEDS_GATEWAY = Rule(
    "!has(self.strategy.canary) || (has(self.traffic) && has(self.traffic.router) && "
    "self.traffic.router != 'service') || !self.strategy.canary.steps.exists(s, has(s.setHeaderRoute))",
    "spec.strategy.canary.steps[].setHeaderRoute needs spec.traffic.router gatewayAPI or istio: a header "
    "route is a rule of an HTTPRoute or a VirtualService",
    ".strategy.canary.steps",
)

# The gateway marks the requests the stable pods copy (core/shadow.py): an HTTPRoute filter, or a
# VirtualService route's request headers.
# The challenger is a third backend of the route: the service router splits by pods of one Service.
_CHALLENGER_NEEDS_GATEWAY = Rule(
    "!has(self.strategy.canary) || (has(self.traffic) && has(self.traffic.router) && "
    "self.traffic.router != 'service') || "
    "!self.strategy.canary.steps.exists(s, has(s.experiment) && has(s.experiment.challenger))",
    "spec.strategy.canary.steps[].experiment.challenger needs spec.traffic.router gatewayAPI or istio: "
    "the route splits traffic three ways",
    ".strategy.canary.steps",
)
# A challenger the same as the candidate would be one Deployment compared with itself.
_CHALLENGER_DIFFERS = Rule(
    "!has(self.strategy.canary) || self.strategy.canary.steps.all(s, !has(s.experiment) || "
    "!has(s.experiment.challenger) || s.experiment.challenger.image != self.image || "
    "(has(s.experiment.challenger.model) && s.experiment.challenger.model.sha256 != self.model.sha256))",
    "spec.strategy.canary.steps[].experiment.challenger must differ from the candidate: another image, "
    "or another model (sha256)",
    ".strategy.canary.steps",
)
_SHADOW_NEEDS_GATEWAY = Rule(
    "!has(self.strategy.canary) || (has(self.traffic) && has(self.traffic.router) && "
    "self.traffic.router != 'service') || !self.strategy.canary.steps.exists(s, has(s.shadow))",
    "spec.strategy.canary.steps[].shadow needs spec.traffic.router gatewayAPI or istio: the route marks "
    "the requests the stable pods copy",
    ".strategy.canary.steps",
)


# ---- notifications (docs/notifications.md) ----------------------------------------------

# What a notification is sent on; `core.notifications.TRIGGERS` maps the Events onto these.
NotificationTrigger = Literal[
    "RolloutStarted",
    "StepCompleted",
    "Paused",
    "AnalysisFailed",
    "Aborted",
    "RolledBack",
    "Promoted",
    "Healthy",
]


class NotificationUrl(_Model):
    """Where the webhook URL comes from: a Secret key, never the spec (the URL is a credential)."""

    secret_key_ref: SecretKeyRef


class NotificationTarget(_Model):
    """A webhook that is sent a message on the rollout's transitions (docs/notifications.md)."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            Rule(
                "!has(self.body) || self.type == 'webhook'",
                "spec.notifications[].body is for type webhook only (slack and teams have their own format)",
                ".body",
            )
        )
    )
    name: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_RE)] = Field(
        description="Names the target in the NotificationsDelivered condition and the metrics."
    )
    type: Literal["webhook", "slack", "teams"] = Field(
        description="`webhook`: the JSON payload of docs/notifications.md (or `body`); `slack`: an "
        "incoming-webhook message; `teams`: an Adaptive Card."
    )
    url_from: NotificationUrl = Field(
        description="The webhook URL, from a key of a Secret in this namespace."
    )
    triggers: Annotated[list[NotificationTrigger], Field(min_length=1, max_length=8)] | None = Field(
        default=None, description="What to send on; default: every trigger."
    )
    body: Annotated[dict[str, Any], Field(json_schema_extra=_free_form)] | None = Field(
        default=None,
        description="webhook: the JSON body to send instead of the payload; every `{{path}}` in its "
        "strings is replaced from the payload (`{{event.message}}`, `{{rollout.phase}}`).",
    )
    timeout: Duration = Field(default="5s", description="How long one attempt may take.")
    max_attempts: Annotated[int, Field(ge=1, le=10)] = Field(
        default=4, description="Attempts per notification, retried with backoff (1s, 2s, 4s, ...)."
    )


class ModelDeploymentSpec(_Model):
    """A model served from an image digest, and how new revisions roll out."""

    model_config = ConfigDict(
        json_schema_extra=rules(
            _ANALYSIS_NEEDED,
            _BACKGROUND_STEP,
            _NO_RESERVED_ENV,
            _MODEL_PATH_FROM_SOURCE,
            _BLUE_GREEN_DEVICES,
            _CANARY_SCALE_NEEDS_ROUTE,
            _HEADER_ROUTE_NEEDS_GATEWAY,
            _SHADOW_NEEDS_GATEWAY,
            _CHALLENGER_NEEDS_GATEWAY,
            _CHALLENGER_DIFFERS,
            _CORAL_NODE_SELECTOR,
            _CORAL_AFFINITY,
            _CORAL_TOLERATION,
            _SOURCE_OWNS_MODEL_DIR,
        )
    )
    model: ModelRef
    image: Image
    replicas: Annotated[int, Field(ge=0, le=1000)] = 1
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    resources: Resources | None = None
    env: (
        Annotated[
            list[EnvVar],
            Field(
                max_length=64,
                json_schema_extra=keyed_by("name"),
            ),
        ]
        | None
    ) = None
    strategy: Strategy
    traffic: Traffic = Traffic()
    analysis: Analysis | None = None
    smoke_test: SmokeTest | None = None
    accelerator: Accelerator | None = None
    template: PodTemplate | None = Field(
        default=None,
        description="Pod labels and annotations, volumes, sidecars and init containers, scheduling, the "
        "service account, and the model container's mounts, env, command and probes (docs/api.md).",
    )
    progress_deadline: Duration = "10m"
    paused: bool = Field(
        default=False,
        description="Hold any rollout where it is: the declarative pause, kept in Git. `modelship pause` "
        "sets status.pause instead, which a GitOps tool leaves alone; either one holds.",
    )
    notifications: (
        Annotated[list[NotificationTarget], Field(max_length=8, json_schema_extra=keyed_by("name"))] | None
    ) = Field(
        default=None,
        description="Webhooks, Slack or Teams channels told of the rollout's transitions, besides the "
        "operator's own targets (docs/notifications.md).",
    )


# ---- status ----------------------------------------------------------------------------

Phase = Literal["Pending", "Progressing", "Paused", "Healthy", "Degraded", "RolledBack"]


ConditionValue = tuple[str, str, str]  # a condition's (status, reason, message), as the engine decides it


class Condition(_Model):
    type: Annotated[str, Field(max_length=64)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(max_length=64)]
    message: Annotated[str, Field(max_length=1024)] = ""
    last_transition_time: datetime
    observed_generation: int


Verdict = Literal["Successful", "Failed", "Inconclusive", "Error"]
RunKind = Literal["step", "background", "prePromotion", "postPromotion", "evaluation", "experiment"]


class Comparison(_Model):
    """An experiment's test of one metric, the candidate against the stable revision."""

    outcome: Literal["Better", "Worse", "Equivalent", "NotEnoughData"]
    samples: float = Field(description="The candidate's samples (feedback rows, requests).")
    stable_samples: float
    effect: float = Field(
        description="accuracy: candidate minus stable; latency: Cliff's delta (above 0: the candidate "
        "is slower)."
    )
    p_value: float
    power: float = Field(description="The chance these samples had to show a minDetectableEffect.")


class Measurement(_Model):
    """One measurement of one metric, and how it was judged."""

    verdict: Verdict
    value: float | None = None
    stable_value: float | None = None
    message: Annotated[str, Field(max_length=512)] = ""
    measured_at: datetime
    comparison: Comparison | None = Field(default=None, description="An experiment's test (kind experiment).")


class MetricStatus(_Model):
    """The measurements of one metric in one analysis run (the last few) and its tallies."""

    name: Annotated[str, Field(max_length=63)]
    successful: int = 0
    failed: int = 0
    inconclusive: int = 0
    errors: int = 0
    consecutive_inconclusive: int = 0
    consecutive_errors: int = 0
    measurements: Annotated[list[Measurement], Field(max_length=10)] = []


class AnalysisRun(_Model):
    """One analysis of one revision: an `analysis` step, the background analysis, or a blue/green gate."""

    kind: RunKind
    revision: Annotated[str, Field(max_length=63)]
    step: int | None = None
    phase: Literal["Running", "Successful", "Failed", "Inconclusive", "Error", "Unreachable"] = "Running"
    message: Annotated[str, Field(max_length=1024)] = ""
    started_at: datetime
    # The first round of the current Prometheus outage (unreachableTimeout counts from it); None
    # once Prometheus answers again.
    unreachable_since: datetime | None = None
    # When the run first read requests: its false-failure budget is spent from then (`stats`).
    data_since: datetime | None = None
    last_measured_at: datetime | None = None
    metrics: Annotated[list[MetricStatus], Field(max_length=16)] = []
    baseline: Annotated[str, Field(max_length=63)] | None = Field(
        default=None,
        description="An experiment with a challenger: the challenger revision the candidate is compared "
        "with (each measurement's stableValue and comparison.stableSamples are its); unset: stable.",
    )


class SmokeTestResult(_Model):
    revision: Annotated[str, Field(max_length=63)]
    passed: bool
    message: Annotated[str, Field(max_length=1024)] = ""
    tested_at: datetime


class RevisionTemplate(_Model):
    """What makes a revision: the fields of the spec that end up in its pods (hashed into its name)."""

    image: Image
    model: ModelRef
    port: int
    resources: Resources | None = None
    env: Annotated[list[EnvVar], Field(max_length=64)] | None = None
    accelerator: Accelerator | None = None
    template: PodTemplate | None = None


RevisionName = Annotated[str, Field(max_length=63)]
BlueGreenPhase = Literal["Preview", "Promoted", "Switched", "Accepted"]
SWITCHED: tuple[BlueGreenPhase, ...] = ("Switched", "Accepted")  # `<name>` serves the new colour


class ChallengerRollout(_Model):
    """The challenger revision an experiment step runs beside the candidate."""

    revision: RevisionName = Field(description="Its revision (Deployment), behind `<name>-challenger`.")
    weight: Annotated[int, Field(ge=0, le=50)] = Field(
        default=0,
        description="Percent of traffic the route is asked to give it (0 until its pods are ready).",
    )


class CanaryRollout(_Model):
    """A canary in progress: where it is in `spec.strategy.canary.steps`."""

    revision: RevisionName = Field(description="The canary revision.")
    step: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="Steps done: the index (from 0) of the canary step in progress; kubectl's STEP column "
        "shows it, the plugin as `Step: <done>/<steps>`; `modelship promote` moves it on by one.",
    )
    weight: Annotated[int, Field(ge=0, le=100)] = Field(
        default=0,
        description="Percent of traffic the canary steps asked for (the `TrafficRouted` condition "
        "says whether the router shows it).",
    )
    actual_weight: Annotated[int, Field(ge=0, le=100)] | None = Field(
        default=None,
        description="Percent of requests the canary really gets, rounded: with router service its share "
        "of the ready pods `<name>` selects (as close to `weight` as spec.replicas allows), with "
        "gatewayAPI its weight in the HTTPRoute as read back.",
    )
    pause_start_time: datetime | None = Field(
        default=None,
        description="When the pause or loadTest step in progress began (a pause: once the weight before "
        "it was verified; a loadTest: it names the step's Job).",
    )
    header_routes: Annotated[list[HeaderRoute], Field(max_length=MAX_HEADER_ROUTE_STEPS)] | None = Field(
        default=None,
        description="The header routes setHeaderRoute steps added so far (each with its match): the "
        "HTTPRoute sends their requests to `<name>-canary` until promotion, abort or a new revision.",
    )
    shadow_percent: Annotated[int, Field(ge=1, le=100)] | None = Field(
        default=None,
        description="The shadow a shadow step set: this percent of the stable pods' requests is copied "
        "to `<name>-canary` until promotion, abort, a new revision or a shadow step of 0.",
    )
    challenger: ChallengerRollout | None = Field(
        default=None,
        description="An experiment step's challenger while it runs (its Deployment and "
        "`<name>-challenger`); removed from the route once the step is over, then deleted.",
    )
    promote_full: bool | None = Field(
        default=None, description="Set by `modelship promote --full`: skip the remaining steps."
    )


class BlueGreenRollout(_Model):
    """A blue/green rollout in progress: the preview, then the switch."""

    revision: RevisionName = Field(description="The new colour (served by `<name>-preview`).")
    phase: BlueGreenPhase = Field(
        default="Preview",
        description="Preview: no traffic, gates running; Promoted: promotion asked, the new colour scales "
        "up; Switched: `<name>` serves the new colour (post-promotion analysis, or devices still moving); "
        "Accepted: `modelship promote` accepted the post-promotion analysis as it is.",
    )
    ready_time: datetime | None = Field(
        default=None, description="When the preview became ready; `autoPromotionDelay` counts from it."
    )
    promote_full: bool | None = Field(
        default=None, description="Set by `modelship promote --full`: skip the remaining gates."
    )


class AbortedRollout(_Model):
    """A rollout that was stopped: stable serves everything until `retry` or a spec change."""

    revision: RevisionName = Field(description="The revision whose rollout was aborted.")
    reason: Annotated[str, Field(max_length=64)] | None = Field(
        default=None,
        description="Why (Aborted, AnalysisFailed, SmokeTestFailed, ProgressDeadlineExceeded, ...).",
    )
    message: Annotated[str, Field(max_length=1024)] | None = None
    scale_down_at: datetime | None = Field(default=None, description="When its pods are scaled to 0.")


class RolledBackRollout(_Model):
    """A rollout the spec took back mid-way (its image reverted to the stable one); remembered
    until the next rollout, so the phase stays RolledBack while stable scales back up."""

    revision: RevisionName = Field(description="The revision whose rollout was taken back.")


_ONE_ROLLOUT = Rule(
    "[has(self.canary), has(self.blueGreen), has(self.aborted), has(self.rolledBack)]"
    ".filter(x, x).size() <= 1",
    "status.rollout holds at most one of canary, blueGreen, aborted and rolledBack",
)


class Rollout(_Model):
    """The rollout beside the stable revision, one shape per state; absent when there is none."""

    model_config = ConfigDict(json_schema_extra=rules(_ONE_ROLLOUT))
    canary: CanaryRollout | None = None
    blue_green: BlueGreenRollout | None = None
    aborted: AbortedRollout | None = None
    rolled_back: RolledBackRollout | None = None

    @property
    def revision(self) -> str | None:
        """The revision being rolled out (or aborted, or rolled back), whatever the shape."""
        state = self.canary or self.blue_green or self.aborted or self.rolled_back
        return state.revision if state is not None else None


class ManualPause(_Model):
    """A pause someone asked for through the status (`modelship pause`), held until `modelship resume`
    removes it. It lives beside `status.rollout`, not in it: it holds whatever rollout is or comes
    next, as `spec.paused` does, and a GitOps tool that owns the spec never reverts it."""

    by: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="Who asked: a user, or the tool that acted for one (`kubectl-modelship`, `argocd`)."
    )
    at: datetime | None = Field(default=None, description="When it was asked.")


MAX_PENDING_EVENTS = 16  # status.pendingEvents holds at most this many (one pass's transitions)


class PendingEvent(_Model):
    """A transition Event a pass decided, recorded in its first status write, removed once posted."""

    name: Annotated[str, Field(max_length=253)] = Field(
        description="The Event's metadata.name, `<name>.<16 hex>`: a hash of the ModelDeployment's uid, "
        "the resourceVersion the pass decided on and the Event's place in the pass. A second post is "
        "refused as AlreadyExists, so the Event is posted once."
    )
    type: Literal["Normal", "Warning"]
    reason: Annotated[str, Field(max_length=128)]
    note: Annotated[str, Field(max_length=1024)] = ""
    time: datetime = Field(description="When the pass decided it: the Event's eventTime.")


class ModelDeploymentStatus(_Model):
    """What modelship observed and decided; everything it needs to resume after a restart."""

    model_config = ConfigDict(extra="ignore")
    observed_generation: int | None = None
    phase: Phase | None = None
    stable_revision: RevisionName | None = None
    stable_template: RevisionTemplate | None = Field(
        default=None,
        description="The stable revision's pod-defining fields, to re-create it after spec changes.",
    )
    rollout: Rollout | None = None
    pause: ManualPause | None = Field(
        default=None,
        description="Set by `modelship pause`, removed by `modelship resume`: holds a rollout like "
        "spec.paused, without touching the spec.",
    )
    scale_down_revision: RevisionName | None = Field(
        default=None, description="The previous stable revision, kept running until `scaleDownAt`."
    )
    scale_down_at: datetime | None = None
    previous_template: RevisionTemplate | None = Field(
        default=None, description="The stable revision before the last promotion, for `modelship undo`."
    )
    replicas: int | None = Field(
        default=None,
        description="Pods that exist among those `selector` matches, as their Deployments report them "
        "(the `scale` subresource's status.replicas).",
    )
    available_replicas: int | None = Field(default=None, description="Available pods of the stable revision.")
    selector: Annotated[str, Field(max_length=512)] | None = Field(
        default=None,
        description="The pods spec.replicas is sized for, which an autoscaler averages its metrics over: "
        "every pod of the model with a canary strategy, the serving colour with blue/green "
        "(the `scale` subresource's selector).",
    )
    conditions: (
        Annotated[
            list[Condition],
            Field(
                max_length=16,
                json_schema_extra=keyed_by("type"),
            ),
        ]
        | None
    ) = None
    analysis: (
        Annotated[
            list[AnalysisRun],
            Field(
                max_length=4,
                json_schema_extra=keyed_by("kind"),
            ),
        ]
        | None
    ) = Field(default=None, description="The analysis runs of the current (or last) rollout, one per kind.")
    smoke_test: SmokeTestResult | None = None
    pending_events: (
        Annotated[
            list[PendingEvent],
            Field(max_length=MAX_PENDING_EVENTS, json_schema_extra=keyed_by("name")),
        ]
        | None
    ) = Field(
        default=None,
        description="The transition Events the last pass decided and may not have posted yet: it "
        "records them in its first status write and removes them once posted. Set after a pass "
        "only if the operator stopped (or a write failed) in between; the next pass posts them "
        "first, each under its own name, so each is posted once.",
    )

    @property
    def canary(self) -> CanaryRollout | None:
        return self.rollout.canary if self.rollout else None

    @property
    def blue_green(self) -> BlueGreenRollout | None:
        return self.rollout.blue_green if self.rollout else None

    @property
    def aborted(self) -> AbortedRollout | None:
        return self.rollout.aborted if self.rollout else None

    @property
    def new_revision_weight(self) -> int:
        """Percent of traffic the rollout asked for its new revision: a canary's weight, 100 once
        a blue/green rollout switched, else 0."""
        if self.canary is not None:
            return self.canary.weight
        switched = self.blue_green is not None and self.blue_green.phase in SWITCHED
        return 100 if switched else 0

    @property
    def new_revision_actual_weight(self) -> int:
        """Percent of requests the rollout's new revision really gets: a canary's `actualWeight`
        (its `weight` in a status no pass has written it to yet), 100 once a blue/green rollout
        switched (a Service selector swap is exact), else 0."""
        if self.canary is not None and self.canary.actual_weight is not None:
            return self.canary.actual_weight
        return self.new_revision_weight

    @property
    def rolled_back(self) -> RolledBackRollout | None:
        return self.rollout.rolled_back if self.rollout else None

    @property
    def rolling(self) -> str | None:
        """The revision of a canary or blue/green rollout in progress (not an aborted one)."""
        state = self.canary or self.blue_green
        return state.revision if state is not None else None


# The flat status fields modelship 0.1 wrote (`legacy_status` turns them into `rollout`). They
# stay in the CRD's schema so that the API server does not prune them before the operator's first
# pass reads them; that pass's status write removes them.
LEGACY_STATUS_FIELDS: dict[str, dict[str, Any]] = {
    "pendingRevision": {"type": "string", "maxLength": 63},
    "canaryRevision": {"type": "string", "maxLength": 63},
    "currentStep": {"type": "integer"},
    "canaryWeight": {"type": "integer"},
    "pauseStartTime": {"type": "string", "format": "date-time"},
    "promoteFull": {"type": "boolean"},
    "abortedRevision": {"type": "string", "maxLength": 63},
    "abortReason": {"type": "string", "maxLength": 64},
    "abortMessage": {"type": "string", "maxLength": 1024},
    "abortScaleDownAt": {"type": "string", "format": "date-time"},
}
_BLUE_GREEN_STEPS: tuple[BlueGreenPhase, ...] = ("Preview", "Promoted", "Switched", "Accepted")


def read_status(raw: dict[str, Any] | None, spec: ModelDeploymentSpec) -> ModelDeploymentStatus:
    """The status as read from the API, with a status written by modelship 0.1 (flat canary fields,
    blue/green phases as step numbers) converted, so an in-flight rollout survives the upgrade."""
    raw = dict(raw or {})
    legacy = {k: raw.pop(k) for k in LEGACY_STATUS_FIELDS if k in raw}
    status = ModelDeploymentStatus.model_validate(raw)
    if not legacy or status.rollout is not None:
        return status
    rollout: dict[str, Any] | None = None
    revision, step = legacy.get("canaryRevision"), int(legacy.get("currentStep") or 0)
    if legacy.get("abortedRevision"):
        rollout = {
            "aborted": {
                "revision": legacy["abortedRevision"],
                "reason": legacy.get("abortReason"),
                "message": legacy.get("abortMessage"),
                "scaleDownAt": legacy.get("abortScaleDownAt"),
            }
        }
    elif revision and spec.strategy.blue_green is not None:
        rollout = {
            "blueGreen": {
                "revision": revision,
                "phase": _BLUE_GREEN_STEPS[min(step, len(_BLUE_GREEN_STEPS) - 1)],
                "readyTime": legacy.get("pauseStartTime"),
                "promoteFull": legacy.get("promoteFull"),
            }
        }
    elif revision:
        rollout = {
            "canary": {
                "revision": revision,
                "step": step,
                "weight": legacy.get("canaryWeight") or 0,
                "pauseStartTime": legacy.get("pauseStartTime"),
                "promoteFull": legacy.get("promoteFull"),
            }
        }
    if rollout is None:
        return status
    clean = {kind: {k: v for k, v in body.items() if v is not None} for kind, body in rollout.items()}
    return status.model_copy(update={"rollout": Rollout.model_validate(clean)})


def dump(model: BaseModel) -> dict[str, Any]:
    """The Kubernetes form of a model: camelCase, no unset optionals."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)
