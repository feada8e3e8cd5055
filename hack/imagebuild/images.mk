# The container images, built and tested with podman (hack/imagebuild, docs/images.md).
# Included from the root Makefile; uses its PY, VENV and STAMP.

IMAGEBUILD := PYTHONPATH=hack $(PY) -m imagebuild
# `make test` runs the image tests (pytest -m images), so it builds the images first.
TEST_DEPS += images

.PHONY: images images-tools bench-images

# Debian's packages; CI machines start fresh, so this runs on every `make images` and is a no-op
# when the tools are there.
images-tools:  ## install podman, buildah, runc, skopeo, umoci and debootstrap, if missing
	bash hack/imagebuild/install-tools.sh

images: $(STAMP) images-tools  ## build the serving and operator images (cache: ~/.cache/modelship/images)
	$(IMAGEBUILD) build

bench-images: images  ## image size, layers, cold/code-only rebuild, cold start -> bench/results/images.json
	PYTHONPATH=hack $(PY) bench/images.py --out bench/results/images.json
