"""python -m imagebuild build | env: what `make images` runs, and podman's settings for a shell."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from imagebuild.build import SPECS, build
from imagebuild.podman import images_root, write_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagebuild", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build every image (cached by content); print refs, digests and SBOMs")
    b.add_argument("--force", action="store_true", help="build even when this content was built before")
    sub.add_parser("env", help="print `export` lines that point podman at modelship's configuration")
    args = parser.parse_args(argv)

    if args.command == "env":
        for k, v in write_config().items():
            print(f"export {k}={shlex.quote(v)}")
        return 0

    summary = {}
    for spec in SPECS:
        built = build(spec, force=args.force)
        summary[spec.name] = built
        how = f"built in {built.build_seconds:.0f}s" if built.build_seconds is not None else "cached"
        print(f"\n{spec.name}: {built.dev_ref} = {built.ref} ({how})", flush=True)
        print(f"  digest: {built.digest}")
        print(f"  id:     {built.image_id}")
        print(f"  size:   {built.size / 1e6:.0f} MB in {len(built.layers)} layers")
        if built.sbom:
            print(f"  sbom:   {built.sbom}")
        elif spec.target:
            print(
                f"  (stage '{spec.target}' of {spec.dockerfile} only: the rest needs Coral's apt repository)"
            )
    latest = images_root() / "latest.json"
    latest.write_text(json.dumps({k: v.__dict__ for k, v in summary.items()}, indent=2) + "\n")
    print(f"\nrecords: {latest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
