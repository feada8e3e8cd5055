"""Where slow build outputs live, outside the repository, and how one is built into it.

Each output (the control plane's binaries, Traefik) gets a directory under `cache_root()` keyed
by its versions; `build_once` fills it through a scratch directory renamed at the end, so a
killed build never leaves a half-filled cache that looks complete.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imagebuild.podman import cache_root as modelship_cache

# Another checkout (an older branch) may still use a cache of other versions; one untouched
# this long is gone from every checkout in practice, and each holds hundreds of MB.
STALE_DAYS = 14
USED = "last-used"
MANIFEST = "manifest.json"


def cache_root() -> Path:
    """`devcluster` in modelship's cache (`$MODELSHIP_CACHE`, else `~/.cache/modelship`)."""
    return modelship_cache() / "devcluster"


def mark_used(out: Path) -> None:
    (out / USED).touch()


def prune(root: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove caches of other versions not used for STALE_DAYS, and scratch dirs of builds that
    were killed (over a day old). Returns what was removed."""
    now = time.time() if now is None else now
    removed = []
    for entry in root.iterdir() if root.is_dir() else []:
        if entry == keep or not entry.is_dir():
            continue
        if ".partial-" in entry.name:
            stale = now - entry.stat().st_mtime > 86400
        else:
            marker = entry / USED if (entry / USED).exists() else entry / MANIFEST
            stale = marker.exists() and now - marker.stat().st_mtime > STALE_DAYS * 86400
        if stale:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def build_once(
    out: Path, is_built: Callable[[Path], bool], make: Callable[[Path], dict[str, Any]], what: str
) -> Path:
    """`out`, built first unless `is_built(out)`: `make(scratch)` fills a scratch directory and
    returns its manifest (written to `manifest.json` with the build's duration), then the scratch
    directory becomes `out`. `what` names the output in the error when Go is missing."""
    if is_built(out):
        mark_used(out)
        return out
    if shutil.which("go") is None:
        raise RuntimeError(f"the Go toolchain is required to build {what} (go not on PATH)")
    started = time.monotonic()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".partial-", dir=out.parent))
    try:
        manifest = make(tmp)
        manifest["build_seconds"] = round(time.monotonic() - started)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    mark_used(out)
    for stale in prune(out.parent, keep=out):
        print(f"removed a cache unused for {STALE_DAYS} days: {stale}", file=sys.stderr)
    return out


def main(
    doc: str | None, where: Callable[[], Path], build: Callable[[], Path], argv: list[str] | None
) -> int:
    """A build script's command line: build into the cache and print it, or `--print-dir`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--print-dir", action="store_true", help="print the cache dir and exit (no build)")
    args = parser.parse_args(argv)
    print(where() if args.print_dir else build())
    return 0
