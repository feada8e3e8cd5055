"""python -m imagebuild build | models | env: what `make images` runs, and podman's settings for a shell."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from imagebuild.build import SERVING, SPECS, build
from imagebuild.podman import images_root, podman, write_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m imagebuild", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build",
        help="build every image (cached by content), then the demo model images on the serving image; "
        "print refs, digests and SBOMs",
    )
    b.add_argument("--force", action="store_true", help="build even when this content was built before")
    sub.add_parser("models", help="build only the demo model images, on the (cached) serving image")
    sub.add_parser("env", help="print `export` lines that point podman at modelship's configuration")
    args = parser.parse_args(argv)

    if args.command == "env":
        for k, v in write_config().items():
            print(f"export {k}={shlex.quote(v)}")
        return 0

    if args.command == "models":
        print_models(build(SERVING, sbom=False).ref)
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
    print_models(summary[SERVING.name].ref)
    return 0


def print_models(serving_ref: str) -> None:
    """The demo's models (localworld.demoimages): one thin layer each on the serving image."""
    from localworld.demoimages import build_model_images, write_record

    def size(ref: str) -> int:
        return int(podman("image", "inspect", "--format", "{{.Size}}", ref).stdout)

    models = build_model_images(serving_ref, log=True)
    base = size(serving_ref)
    print(f"\ndemo models on {serving_ref} ({base / 1e6:.0f} MB):")
    for name, m in models.items():
        env = " ".join(f"{k}={v}" for k, v in m.env.items())
        extra = (size(m.ref) - base) / 1e3
        print(f"  {name:14} {m.ref}  +{extra:.0f} kB  model sha256 {m.model_sha256[:12]}  {env}".rstrip())
    print(f"records: {write_record(models)}")


if __name__ == "__main__":
    sys.exit(main())
