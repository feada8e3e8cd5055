"""Configuration, read only from environment variables (every one is documented in README.md)."""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Framework = Literal["sklearn", "onnx", "tflite"]
Accelerator = Literal["cpu", "coral"]

_SUFFIX_FRAMEWORK: dict[str, Framework] = {
    ".joblib": "sklearn",
    ".pkl": "sklearn",
    ".onnx": "onnx",
    ".tflite": "tflite",
}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


@dataclass(frozen=True)
class BuildInfo:
    """What the image says about itself (set from build args / by the operator)."""

    image: str
    image_digest: str
    git_revision: str
    build_time: str
    image_version: str


@dataclass(frozen=True)
class Faults:
    """Deliberate misbehaviour for rollout demos and tests (a bad image that still starts)."""

    error_ratio: float = 0.0  # share of predict/infer requests answered 500
    latency_s: float = 0.0  # seconds added to every predict/infer request
    # /healthz answers 503 once the server has been up this long (0: never), so a liveness probe
    # fails and the kubelet restarts the container: a hung process, on purpose.
    unhealthy_after_s: float = 0.0

    @property
    def on(self) -> bool:
        return self.error_ratio > 0 or self.latency_s > 0 or self.unhealthy_after_s > 0

    def as_json(self) -> dict[str, float]:
        return {
            "error_ratio": self.error_ratio,
            "latency_seconds": self.latency_s,
            "unhealthy_after_seconds": self.unhealthy_after_s,
        }


@dataclass(frozen=True)
class Shadow:
    """Where and how this pod sends shadow copies (modelserver.shadow); off without a target."""

    target: tuple[str, int] | None = None  # host and port of the candidate's Service
    queue: int = 64  # copies waiting; one more is dropped
    workers: int = 2  # copies in flight at once
    timeout_s: float = 2.0  # a copy unanswered this long is failed
    # This pod's revision (MODELSHIP_REVISION): a request marked for it is the candidate's own.
    revision: str = ""


def _target(env: Mapping[str, str]) -> tuple[str, int] | None:
    """The first of SHADOW_TARGET's comma-separated host:port whose host is not a Kubernetes
    `$(VAR)` left unexpanded (the Service's variable is set only if it existed when the pod started)."""
    raw = env.get("SHADOW_TARGET", "").strip()
    if not raw:
        return None
    chosen = next((t.strip() for t in raw.split(",") if "$(" not in t), "")
    host, _, port = chosen.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise ConfigError(
            f"SHADOW_TARGET={raw!r} must be host:port (or several, comma-separated: the first without "
            "an unexpanded $(VAR) is used), e.g. fraud-detector-canary:80"
        )
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Settings:
    model_path: Path
    model_sha256: str | None
    model_cpu_sha256: str | None
    model_name: str
    model_version: str
    framework: Framework
    accelerator: Accelerator
    host: str
    port: int
    max_body_bytes: int
    max_batch_rows: int
    feedback_cache_size: int
    # Feedback through any load balancer (feedbacktoken): the key the model's replicas share and
    # the address the others reach this one at; tokens are issued only when both are set.
    feedback_key: bytes | None
    pod_address: str | None
    feedback_token_ttl_s: int
    graceful_timeout_s: int
    # How long an idle keep-alive connection stays open. Longer than the idle timeout of the proxy in
    # front (Traefik 90 s, nginx and AWS ALB 60 s, Google's load balancer 600 s): a server that closes
    # first races the proxy's next request on that connection, which the proxy answers 502.
    keepalive_timeout_s: int
    inference_threads: int
    sklearn_fast_path: bool
    edgetpu_device: str
    log_level: str
    build: BuildInfo
    faults: Faults
    shadow: Shadow = Shadow()

    @property
    def bundle_dir(self) -> Path:
        return self.model_path.parent


def _int(env: Mapping[str, str], key: str, default: int, minimum: int) -> int:
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{key}={value} must be at least {minimum}")
    return value


def _float(env: Mapping[str, str], key: str, low: float, high: float) -> float:
    raw = env.get(key, "").strip()
    if not raw:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{key}={raw!r} is not a number") from None
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"{key}={raw} must be between {low:g} and {high:g}")
    return value


def _bool(env: Mapping[str, str], key: str) -> bool:
    raw = env.get(key, "").strip().lower()
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ConfigError(f"{key}={raw!r} must be true or false")


def _sha(env: Mapping[str, str], key: str) -> str | None:
    raw = env.get(key, "").strip().lower()
    if not raw:
        return None
    raw = raw.removeprefix("sha256:")
    if not _SHA256.match(raw):
        raise ConfigError(f"{key} must be 64 hex digits (optionally prefixed 'sha256:'), got {raw!r}")
    return raw


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming the first bad variable."""
    env = os.environ if env is None else env
    raw_path = env.get("MODEL_PATH", "").strip()
    if not raw_path:
        raise ConfigError("MODEL_PATH is required: the path of the model file (.joblib, .onnx or .tflite)")
    model_path = Path(raw_path)

    raw_fw = env.get("MODEL_FRAMEWORK", "auto").strip().lower() or "auto"
    framework: Framework
    if raw_fw == "auto":
        guessed = _SUFFIX_FRAMEWORK.get(model_path.suffix.lower())
        if guessed is None:
            raise ConfigError(
                f"MODEL_FRAMEWORK=auto cannot tell the framework of {model_path.name!r}; "
                f"use a {sorted(_SUFFIX_FRAMEWORK)} file or set MODEL_FRAMEWORK to sklearn, onnx or tflite"
            )
        framework = guessed
    elif raw_fw in ("sklearn", "onnx", "tflite"):
        framework = raw_fw  # type: ignore[assignment]  # narrowed by the membership test
    else:
        raise ConfigError(f"MODEL_FRAMEWORK={raw_fw!r} must be auto, sklearn, onnx or tflite")

    raw_acc = env.get("ACCELERATOR", "cpu").strip().lower() or "cpu"
    if raw_acc not in ("cpu", "coral"):
        raise ConfigError(f"ACCELERATOR={raw_acc!r} must be cpu or coral")
    if raw_acc == "coral" and framework != "tflite":
        raise ConfigError(f"ACCELERATOR=coral needs a TFLite model, but the model is {framework}")
    accelerator: Accelerator = "coral" if raw_acc == "coral" else "cpu"

    sha = _sha(env, "MODEL_SHA256")
    allow_unverified = _bool(env, "MODEL_ALLOW_UNVERIFIED")  # checked even when MODEL_SHA256 is set
    if sha is None and not allow_unverified:
        raise ConfigError(
            "MODEL_SHA256 is required (the artifact's sha256); "
            "set MODEL_ALLOW_UNVERIFIED=true only for local experiments"
        )

    name = env.get("MODEL_NAME", "").strip() or model_path.stem.removesuffix("_edgetpu")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name):
        raise ConfigError(f"MODEL_NAME={name!r} must be 1-128 of letters, digits, '.', '_' or '-'")

    feedback_key = env.get("FEEDBACK_KEY", "").strip().encode() or None
    if feedback_key is not None and len(feedback_key) < 16:
        raise ConfigError(
            "FEEDBACK_KEY must be at least 16 characters (the operator sets 64 random hex digits)"
        )
    pod_ip = env.get("POD_IP", "").strip()
    if pod_ip:
        try:
            parsed_ip = ipaddress.ip_address(pod_ip)
        except ValueError:
            raise ConfigError(f"POD_IP={pod_ip!r} must be an IP address (the pod's status.podIP)") from None
        pod_ip = f"[{parsed_ip}]" if parsed_ip.version == 6 else str(parsed_ip)
    port = _int(env, "PORT", 8080, 0)

    build = BuildInfo(
        image=env.get("IMAGE", "").strip(),
        image_digest=env.get("IMAGE_DIGEST", "").strip(),
        git_revision=env.get("GIT_REVISION", "").strip(),
        build_time=env.get("BUILD_TIME", "").strip(),
        image_version=env.get("IMAGE_VERSION", "").strip(),
    )
    return Settings(
        model_path=model_path,
        model_sha256=sha,
        model_cpu_sha256=_sha(env, "MODEL_CPU_SHA256"),
        model_name=name,
        model_version=env.get("MODEL_VERSION", "").strip() or "unversioned",
        framework=framework,
        accelerator=accelerator,
        host=env.get("HOST", "").strip() or "127.0.0.1",
        port=port,
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1_048_576, 64),
        max_batch_rows=_int(env, "MAX_BATCH_ROWS", 1024, 1),
        feedback_cache_size=_int(env, "FEEDBACK_CACHE_SIZE", 10_000, 0),
        feedback_key=feedback_key,
        pod_address=f"{pod_ip}:{port}" if pod_ip else None,
        feedback_token_ttl_s=_int(env, "FEEDBACK_TOKEN_TTL_SECONDS", 3600, 1),
        graceful_timeout_s=_int(env, "GRACEFUL_TIMEOUT_SECONDS", 10, 0),
        keepalive_timeout_s=_int(env, "KEEPALIVE_TIMEOUT_SECONDS", 620, 1),
        inference_threads=_int(env, "INFERENCE_THREADS", 1, 1),
        sklearn_fast_path=_bool(env, "SKLEARN_FAST_PATH")
        if env.get("SKLEARN_FAST_PATH", "").strip()
        else True,
        edgetpu_device=env.get("EDGETPU_DEVICE", "").strip(),
        log_level=(env.get("LOG_LEVEL", "").strip() or "info").lower(),
        build=build,
        faults=Faults(
            error_ratio=_float(env, "MODELSERVER_FAULT_ERROR_RATIO", 0.0, 1.0),
            latency_s=_float(env, "MODELSERVER_FAULT_LATENCY", 0.0, 60.0),
            unhealthy_after_s=_float(env, "MODELSERVER_FAULT_UNHEALTHY_AFTER", 0.0, 86400.0),
        ),
        shadow=Shadow(
            target=_target(env),
            queue=_int(env, "SHADOW_QUEUE", 64, 1),
            workers=_int(env, "SHADOW_WORKERS", 2, 1),
            timeout_s=_int(env, "SHADOW_TIMEOUT_MS", 2000, 1) / 1000,
            revision=env.get("MODELSHIP_REVISION", "").strip(),
        ),
    )
