"""Builds the images from their Dockerfiles with podman, each cached by the content it is built from."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import tomllib
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from imagebuild.base import ensure_base
from imagebuild.context import context_digest
from imagebuild.podman import image_exists, images_root, podman, podman_stream

REPO = Path(__file__).resolve().parents[2]
# pip in a RUN step reaches the package registries only through the machine's CA bundle.
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# Bump when the way images are built changes, so old cache entries stop matching.
RECIPE = 2


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: str  # relative to the repository
    context: str
    ignorefile: str
    pyproject: str  # whose [project] version becomes the VERSION build argument
    target: str | None = None
    # Whether the Dockerfile also bakes the build's facts into ENV (the serving image's /metadata).
    fact_env: bool = False

    @property
    def repo(self) -> str:
        return f"localhost/{self.name}"

    @property
    def dev_ref(self) -> str:
        return f"{self.repo}:dev"


SERVING = ImageSpec(
    "modelserver",
    "serving-image/Dockerfile",
    "serving-image",
    "serving-image/.dockerignore",
    "serving-image/pyproject.toml",
    fact_env=True,
)
OPERATOR = ImageSpec(
    "modelship-operator", "operator/Dockerfile", ".", "operator/Dockerfile.dockerignore", "pyproject.toml"
)
# Coral's apt repository cannot be reached from here: of Dockerfile.edgetpu only the stage before
# the Coral step is built (tests/images/test_edgetpu.py shows the full build failing at that step).
EDGETPU_BUILDER = ImageSpec(
    "modelserver-edgetpu-builder",
    "serving-image/Dockerfile.edgetpu",
    "serving-image",
    "serving-image/.dockerignore",
    "serving-image/pyproject.toml",
    target="builder",
)
SPECS = (SERVING, OPERATOR, EDGETPU_BUILDER)

# Uncompressed size budgets (podman's "Size"), checked by tests/images. Of the serving image's
# ~640 MB, ~175 are the Debian base and most of the rest onnxruntime, scipy, scikit-learn and
# LiteRT; a budget a little above today's size makes an accidental doubling (a second copy of the
# venv, a model or a cache baked in) fail loudly.
SIZE_BUDGET_MB = {SERVING.name: 700, OPERATOR.name: 420}


@dataclass(frozen=True)
class Built:
    name: str
    ref: str  # localhost/NAME:KEY, this content's image
    dev_ref: str  # localhost/NAME:dev, the newest build
    key: str
    image_id: str
    digest: str  # the manifest digest in local storage (a push may re-compress: the registry's is final)
    size: int
    layers: list[str]
    build_seconds: float | None  # None when it came from the cache
    sbom: str | None
    revision: str
    version: str

    @property
    def cache_dir(self) -> Path:
        return images_root() / self.name / self.key


def git_revision() -> str:
    """HEAD, marked -dirty when the work tree differs from it (the label must not claim a clean commit)."""
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        return "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def project_version(pyproject: Path) -> str:
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert isinstance(version, str)
    return version


def build_args(spec: ImageSpec, base: str, revision: str, context: Path | None = None) -> dict[str, str]:
    return {
        "PYTHON_IMAGE": base,
        "GIT_REVISION": revision,
        "VERSION": project_version(REPO / spec.pyproject),
    }


def cache_key(spec: ImageSpec, context: Path, args: dict[str, str], base_id: str) -> str:
    recipe = {
        "recipe": RECIPE,
        "dockerfile": hashlib.sha256((REPO / spec.dockerfile).read_bytes()).hexdigest(),
        "context": context_digest(context, REPO / spec.ignorefile),
        "args": args,
        "base_id": base_id,
        "target": spec.target,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def podman_build(
    spec: ImageSpec, context: Path, args: dict[str, str], tags: list[str], no_cache: bool = False
) -> float:
    """One `podman build`; returns its seconds. Never pulls: the base is local."""
    cmd = ["build", "--pull=never", "--layers", "-f", str(REPO / spec.dockerfile)]
    cmd += ["--ignorefile", str(REPO / spec.ignorefile), "-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    for k, v in args.items():
        cmd += ["--build-arg", f"{k}={v}"]
    if spec.target:
        cmd += ["--target", spec.target]
    # buildah 1.28 reuses a cached LABEL or ENV step when only a build argument's value changed, so
    # a new revision would keep the old one's labels. Stating the facts on the command line too
    # applies them to the final image whatever the cache holds (the Dockerfile's own LABEL/ENV stay
    # for builders that get this right).
    facts = {"revision": "GIT_REVISION", "created": "BUILD_TIME", "version": "VERSION"}
    for label, arg in facts.items():
        if arg in args:
            cmd += ["--label", f"org.opencontainers.image.{label}={args[arg]}"]
    if spec.fact_env:
        for env, arg in (
            ("GIT_REVISION", "GIT_REVISION"),
            ("BUILD_TIME", "BUILD_TIME"),
            ("IMAGE_VERSION", "VERSION"),
        ):
            if arg in args:
                cmd += ["--env", f"{env}={args[arg]}"]
    if no_cache:
        cmd.append("--no-cache")
    for tag in tags:
        cmd += ["-t", tag]
    start = time.monotonic()
    code = podman_stream([*cmd, str(context)])
    seconds = time.monotonic() - start
    if code != 0:
        raise RuntimeError(f"podman build of {spec.dockerfile} failed (exit {code})")
    return seconds


def inspect(ref: str) -> dict[str, object]:
    data = json.loads(podman("image", "inspect", ref).stdout)
    assert isinstance(data, list) and data
    first = data[0]
    assert isinstance(first, dict)
    return first


def layers(ref: str) -> list[str]:
    rootfs = inspect(ref)["RootFS"]
    assert isinstance(rootfs, dict)
    return [str(x) for x in rootfs["Layers"]]


def build(spec: ImageSpec, force: bool = False, sbom: bool = True, log: bool = True) -> Built:
    """Builds one image unless this exact content was built before; tags it :dev either way."""
    base = ensure_base(log=log)
    base_id = str(inspect(base)["Id"])
    context = REPO / spec.context
    revision = git_revision()
    args = build_args(spec, base, revision)
    key = cache_key(spec, context, args, base_id)
    ref = f"{spec.repo}:{key}"
    record = images_root() / spec.name / key / "image.json"
    if not force and record.is_file() and image_exists(ref):
        podman("tag", ref, spec.dev_ref)
        cached = Built(**{**json.loads(record.read_text()), "build_seconds": None})
        if sbom and spec.target is None and not (cached.sbom and Path(cached.sbom).is_file()):
            cached = _with_sbom(spec, cached)
            record.write_text(json.dumps(asdict(cached), indent=2) + "\n")
        return cached
    # BUILD_TIME is not part of the key: the same content is the same image, whenever built.
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    seconds = podman_build(spec, context, {**args, "BUILD_TIME": created}, [ref, spec.dev_ref])
    info = inspect(ref)
    built = Built(
        name=spec.name,
        ref=ref,
        dev_ref=spec.dev_ref,
        key=key,
        image_id=str(info["Id"]),
        digest=str(info["Digest"]),
        size=int(str(info["Size"])),
        layers=layers(ref),
        build_seconds=round(seconds, 1),
        sbom=None,
        revision=revision,
        version=args["VERSION"],
    )
    built.cache_dir.mkdir(parents=True, exist_ok=True)
    if sbom and spec.target is None:
        built = _with_sbom(spec, built)
    record.write_text(json.dumps(asdict(built), indent=2) + "\n")
    return built


def _with_sbom(spec: ImageSpec, built: Built) -> Built:
    """Writes the SBOM beside the image's record in the cache."""
    from imagebuild.sbom import write_sbom  # cyclonedx is a dev dependency, needed only here

    path = built.cache_dir / "sbom.cdx.json"
    write_sbom(built.ref, spec, built, path)
    return Built(**{**asdict(built), "sbom": str(path)})


def build_all(force: bool = False, log: bool = True) -> dict[str, Built]:
    return {spec.name: build(spec, force=force, log=log) for spec in SPECS}
