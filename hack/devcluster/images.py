"""Images for the real node: built or found in podman's storage, imported into its containerd.

Nothing is pulled: images get onto the node in one archive (`podman save`, cached per set of
image ids under the images cache) imported with `ctr`. Pods name an image by the digest containerd
gives it, `<repository>@sha256:<digest>`, which is what the operator's digest pinning expects.
"""

from __future__ import annotations

import hashlib
import subprocess
import tempfile
from pathlib import Path

from imagebuild.podman import image_exists, images_root, podman

PAUSE_SOURCE = Path(__file__).resolve().parent / "pause" / "pause.c"
PAUSE_REPO = "localhost/modelship/pause"
KEEP_ARCHIVES = 4  # the sandbox image's, the world's, and a build or two back
NAMESPACE = "k8s.io"  # the containerd namespace the CRI plugin uses


def sandbox_image() -> str:
    """The pod sandbox image (a static `pause` of our own), built once per source change."""
    key = hashlib.sha256(PAUSE_SOURCE.read_bytes()).hexdigest()[:16]
    ref = f"{PAUSE_REPO}:{key}"
    if image_exists(ref):
        return ref
    with tempfile.TemporaryDirectory() as tmp:
        ctx = Path(tmp)
        subprocess.run(
            ["gcc", "-static", "-Os", "-s", "-o", str(ctx / "pause"), str(PAUSE_SOURCE)], check=True
        )
        (ctx / "Containerfile").write_text(
            'FROM scratch\nCOPY pause /pause\nUSER 65535:65535\nENTRYPOINT ["/pause"]\n'
        )
        podman("build", "--pull=never", "-t", ref, str(ctx))
    return ref


def archive(refs: list[str]) -> Path:
    """One archive of `refs` (layers they share are stored once), kept per set of image ids; only
    the KEEP_ARCHIVES most recently used stay."""
    ids = [podman("image", "inspect", "--format", "{{.Id}}", ref).stdout.strip() for ref in refs]
    key = hashlib.sha256("\n".join(sorted(f"{r} {i}" for r, i in zip(refs, ids, strict=True))).encode())
    folder = images_root() / "node-archives"
    path = folder / f"{key.hexdigest()[:20]}.tar"
    folder.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        path.touch()
        return path
    older = sorted(folder.glob("*.tar"), key=lambda p: p.stat().st_mtime, reverse=True)
    for stale in older[KEEP_ARCHIVES - 1 :]:
        stale.unlink()
    partial = path.with_suffix(".partial")
    # docker-archive: the one format podman saves several images into.
    podman("save", "--multi-image-archive", "--format", "docker-archive", "-o", str(partial), *refs)
    partial.rename(path)
    return path


def ctr(socket: Path, *args: str) -> str:
    done = subprocess.run(
        ["ctr", "-a", str(socket), "-n", NAMESPACE, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def digests(socket: Path) -> dict[str, str]:
    """Image name -> manifest digest ("sha256:..."), as the node's containerd has them."""
    found = {}
    for line in ctr(socket, "images", "ls").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and not parts[0].startswith("sha256:"):
            found[parts[0]] = parts[2]
    return found


def import_into(socket: Path, refs: list[str]) -> dict[str, str]:
    """Import each podman ref; return ref -> `<repository>@<digest>` as pods should name it."""
    ctr(socket, "images", "import", str(archive(refs)))
    known = digests(socket)
    pinned = {ref: f"{ref.rsplit(':', 1)[0]}@{known[ref]}" for ref in refs}
    for ref, by_digest in pinned.items():
        # The CRI plugin finds an image only by a name it has; an import records just the tag.
        ctr(socket, "images", "tag", "--force", ref, by_digest)
    return pinned
