"""The base image: Debian bookworm's own Python 3.11, made from Debian's packages with debootstrap.

No registry is reachable here, so the Dockerfiles' digest-pinned ``python:3.11-slim`` cannot be
pulled; this image stands in for it through the ``PYTHON_IMAGE`` build argument. Bookworm's Python
is 3.11 like the pinned base, so the hashed locks (compiled for 3.11) install unchanged.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from imagebuild.podman import image_exists, images_root, podman

SUITE = "bookworm"
VARIANT = "minbase"
INCLUDE = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
REPO = "localhost/modelship-base"
# What python:3.11-slim's config sets and the Dockerfiles rely on (python on PATH, a UTF-8 locale).
CHANGES = (
    "ENV=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV=LANG=C.UTF-8",
    'CMD=["python3"]',
)
# Debian's downloaded packages and package lists: not part of the base (the slim image has neither).
PRUNE = ("var/cache/apt/archives", "var/lib/apt/lists")


def debian_mirror(sources: Path = Path("/etc/apt")) -> str:
    """The machine's Debian mirror for the main archive (not -security), from sources.list(.d)."""
    files = [sources / "sources.list", *sorted((sources / "sources.list.d").glob("*"))]
    for f in files:
        if not f.is_file() or not (f.suffix in (".list", ".sources") or f.name == "sources.list"):
            continue
        text = f.read_text()
        for m in re.finditer(r"^\s*deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text, re.M):
            if m.group(2) == SUITE:
                return m.group(1)
        for stanza in re.split(r"\n\s*\n", text):
            fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and SUITE in fields.get("Suites", "").split():
                return str(fields["URIs"].split()[0])
    raise RuntimeError(f"no Debian {SUITE} mirror in {sources}/sources.list*: debootstrap needs one")


def base_key(mirror: str) -> str:
    recipe = {
        "suite": SUITE,
        "variant": VARIANT,
        "include": INCLUDE,
        "changes": CHANGES,
        "prune": PRUNE,
        "mirror": mirror,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_base(log: bool = True) -> str:
    """Returns the base image's reference, making it first when this recipe has not been made yet."""
    mirror = debian_mirror()
    ref = f"{REPO}:{SUITE}-{base_key(mirror)}"
    if image_exists(ref):
        return ref
    if shutil.which("debootstrap") is None:
        raise RuntimeError("debootstrap is not installed: run `make images-tools` (Debian's package)")
    work = images_root() / "tmp"
    work.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with tempfile.TemporaryDirectory(dir=work, prefix="debootstrap-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            f"--variant={VARIANT}",
            f"--include={','.join(INCLUDE)}",
            SUITE,
            str(root),
            mirror,
        ]
        if log:
            print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL if not log else None)
        for rel in PRUNE:
            for child in (root / rel).glob("*"):
                if child.is_file():
                    child.unlink()
        tar = subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."], check=True, capture_output=True
        ).stdout
        args = ["import"]
        for change in CHANGES:
            args += ["--change", change]
        podman(*args, "-", ref, input_bytes=tar)
    if log:
        print(f"base image {ref} made in {time.monotonic() - start:.0f}s", flush=True)
    return ref
