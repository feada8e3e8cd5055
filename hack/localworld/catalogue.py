"""Locally known serving images: image digest -> model bundle and settings.

There is no registry or container runtime here, so an "image" is a small JSON manifest
naming the serving code's entry point, its default environment and the model bundle it
carries (each file with its sha256). The image digest is the sha256 of that manifest's
bytes: `<repo>@sha256:<digest>` honestly names exactly those files, as an OCI digest
names an image's layers. The catalogue file maps digests to manifests.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPOSITORY = "localhost/modelship/modelserver"
MEDIA_TYPE = "application/vnd.modelship.local-image.v1+json"
# Where the bundle sits inside the "image" (the serving image's documented default, /models).
MODELS_DIR = "/models"
CATALOGUE_FILE = "catalogue.json"


class UnknownImage(LookupError):
    """The image names no digest in the catalogue."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Image:
    name: str
    digest: str  # hex, without "sha256:"
    bundle: Path  # what MODELS_DIR holds
    env: dict[str, str]  # the image's ENV, overridden by the pod's

    @property
    def ref(self) -> str:
        return f"{REPOSITORY}@sha256:{self.digest}"

    @property
    def model_sha256(self) -> str:
        """The sha256 of the model file the image's default MODEL_PATH names."""
        return sha256_file(self.host_path(self.env["MODEL_PATH"]))

    def host_path(self, image_path: str) -> Path:
        """A path inside the image, as it is on this machine (MODELS_DIR -> the bundle)."""
        if image_path == MODELS_DIR or image_path.startswith(MODELS_DIR + "/"):
            return self.bundle / image_path[len(MODELS_DIR) :].lstrip("/")
        return Path(image_path)


def manifest(bundle: Path, model_file: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "mediaType": MEDIA_TYPE,
        "entrypoint": ["python", "-m", "modelserver"],
        "env": {"MODEL_PATH": f"{MODELS_DIR}/{model_file}", **(env or {})},
        "files": {
            f"{MODELS_DIR}/{p.relative_to(bundle)}": sha256_file(p)
            for p in sorted(bundle.rglob("*"))
            if p.is_file()
        },
    }


def add_image(
    root: Path, name: str, bundle: Path, model_file: str, env: dict[str, str] | None = None
) -> Image:
    """Write the image manifest for `bundle` (with `env` as its default environment) and record it
    in root's catalogue."""
    doc = manifest(bundle, model_file, env)
    body = json.dumps(doc, indent=2, sort_keys=True).encode()
    digest = hashlib.sha256(body).hexdigest()
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    (images / f"{digest}.json").write_bytes(body)
    path = root / CATALOGUE_FILE
    entries = json.loads(path.read_text()) if path.exists() else {}
    entries[digest] = {"name": name, "manifest": f"images/{digest}.json", "bundle": str(bundle)}
    path.write_text(json.dumps(entries, indent=2, sort_keys=True))
    return Image(name, digest, bundle, doc["env"])


@dataclass(frozen=True)
class Catalogue:
    root: Path

    def images(self) -> dict[str, Image]:
        path = self.root / CATALOGUE_FILE
        entries: dict[str, dict[str, str]] = json.loads(path.read_text()) if path.exists() else {}
        return {digest: self._load(digest, entry) for digest, entry in entries.items()}

    def _load(self, digest: str, entry: dict[str, str]) -> Image:
        body = (self.root / entry["manifest"]).read_bytes()
        # The digest is a promise about the bytes: check it, as a runtime pulling an image would.
        if hashlib.sha256(body).hexdigest() != digest:
            raise ValueError(f"image manifest {entry['manifest']} does not match its digest {digest}")
        return Image(entry["name"], digest, Path(entry["bundle"]), json.loads(body)["env"])

    def by_name(self, name: str) -> Image:
        for image in self.images().values():
            if image.name == name:
                return image
        raise UnknownImage(f"no image named {name!r} in {self.root / CATALOGUE_FILE}")

    def resolve(self, ref: str) -> Image:
        """The image a pod's `image:` names, by digest (any repository name, like a mirror would)."""
        _, sep, digest = ref.partition("@sha256:")
        images = self.images()
        if not sep or digest not in images:
            raise UnknownImage(f"{ref} is not a locally known image")
        return images[digest]


def build_samples(root: Path) -> Catalogue:
    """The sample images: `sklearn` (modelserver.sample_models' sklearn bundle)."""
    from modelserver.sample_models import sklearn_bundle

    bundle = root / "bundles" / "sklearn"
    if not (bundle / "model.joblib").exists():
        sklearn_bundle(bundle)
    add_image(root, "sklearn", bundle, "model.joblib")
    return Catalogue(root)
