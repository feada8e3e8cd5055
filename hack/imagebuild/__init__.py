"""Builds modelship's container images with podman, without a registry or a Docker engine.

`make images` runs ``python -m imagebuild build``: a Debian base made with debootstrap, both images
built from their Dockerfiles with it as ``PYTHON_IMAGE``, each cached outside the repo by the
content it is built from, with a CycloneDX SBOM of its Python packages beside it.
"""
