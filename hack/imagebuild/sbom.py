"""A CycloneDX SBOM of the Python distributions installed in an image (cyclonedx-python-lib).

Read from the image's own files (mounted read-only by podman), not from the lock it was built
from: the SBOM then lists what is in the image, including what the base and the venv brought.
"""

from __future__ import annotations

import email.parser
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cyclonedx.model import Property
from cyclonedx.model.bom import Bom
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.license import DisjunctiveLicense, LicenseExpression
from cyclonedx.output import make_outputter
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import OutputFormat, SchemaVersion
from packageurl import PackageURL

from imagebuild.podman import podman

if TYPE_CHECKING:
    from imagebuild.build import Built, ImageSpec

# Where Python distributions live in our images: the venv and the package beside it under /opt,
# and Debian's own Python packages from the base.
SEARCH = ("opt", "usr/lib/python3", "usr/local/lib")


@contextmanager
def mounted(ref: str) -> Iterator[Path]:
    """The image's root filesystem, mounted by podman (root only) for as long as the block runs."""
    path = Path(podman("image", "mount", ref).stdout.strip())
    try:
        yield path
    finally:
        podman("image", "unmount", ref, check=False)


def distributions(root: Path) -> list[tuple[str, str, str | None, str]]:
    """(name, version, license, path in the image) for each *.dist-info found, sorted by name."""
    found: dict[tuple[str, str], tuple[str, str, str | None, str]] = {}
    for top in SEARCH:
        for dist in sorted((root / top).glob("**/*.dist-info")):
            meta = dist / "METADATA"
            if not meta.is_file():
                continue
            msg = email.parser.HeaderParser().parsestr(meta.read_text(errors="replace"))
            name, version = msg.get("Name"), msg.get("Version")
            if not name or not version:
                continue
            lic = msg.get("License-Expression") or _short_license(msg.get("License"))
            where = "/" + dist.parent.relative_to(root).as_posix()
            found.setdefault((_normalise(name), version), (name, version, lic, where))
    return sorted(found.values(), key=lambda d: _normalise(d[0]))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _short_license(text: str | None) -> str | None:
    # Some packages put their whole license text in this field: keep it only when it is a name.
    if not text or "\n" in text.strip() or len(text) > 80 or text.strip().upper() == "UNKNOWN":
        return None
    return text.strip()


def make_bom(spec: ImageSpec, built: Built, dists: list[tuple[str, str, str | None, str]]) -> Bom:
    bom = Bom()
    image = Component(
        type=ComponentType.CONTAINER,
        name=spec.name,
        version=built.version,
        bom_ref=f"image:{spec.name}@{built.image_id}",
        properties=[
            Property(name="modelship:image-id", value=built.image_id),
            Property(name="modelship:revision", value=built.revision),
        ],
    )
    bom.metadata.component = image
    libs = []
    for name, version, lic, where in dists:
        licenses = []
        if lic:
            licenses = [
                LicenseExpression(lic)
                if re.search(r"\b(AND|OR|WITH)\b", lic)
                else DisjunctiveLicense(name=lic)
            ]
        lib = Component(
            type=ComponentType.LIBRARY,
            name=name,
            version=version,
            purl=PackageURL(type="pypi", name=_normalise(name), version=version),
            bom_ref=f"pypi:{_normalise(name)}@{version}",
            licenses=licenses,
            properties=[Property(name="modelship:location", value=where)],
        )
        bom.components.add(lib)
        libs.append(lib)
    bom.register_dependency(image, libs)
    return bom


def write_sbom(ref: str, spec: ImageSpec, built: Built, out: Path) -> int:
    """Writes the image's SBOM as CycloneDX 1.6 JSON; returns how many packages it lists."""
    with mounted(ref) as root:
        dists = distributions(root)
    if not dists:
        raise RuntimeError(f"no Python distributions found in {ref}: the SBOM would be empty")
    outputter = make_outputter(make_bom(spec, built, dists), OutputFormat.JSON, SchemaVersion.V1_6)
    assert isinstance(outputter, JsonV1Dot6)
    out.write_text(outputter.output_as_string(indent=2) + "\n")
    return len(dists)
