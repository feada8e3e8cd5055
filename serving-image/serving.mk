# The serving image's make targets; the root Makefile includes this file.
# Uses the root Makefile's PYTHON, VENV, PY and STAMP; recipes run under .ONESHELL with bash -eu -o pipefail.

SERVING_DIR := serving-image
BENCH_VENV ?= .venv-bench
SERVING_LOCK_PLATFORM := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes -q
UV_VERSION := 0.13.9

INSTALL_DEPS += $(SERVING_DIR)/pyproject.toml $(SERVING_DIR)/requirements.lock $(SERVING_DIR)/requirements-test.txt
INSTALL_HOOKS += serving-install
TEST_DEPS += lint-docker serving-typecheck

.PHONY: serving-install lint-docker serving-typecheck bench-serving serving-lock serving-check

# Into the dev venv: the image's exact, hashed runtime deps; test tools; modelserver itself (editable).
# Separate pip calls, because hash-checking mode refuses editable installs in the same run. The test
# tools are installed under the lock's pins (without hashes: pip would want hashes for the tools
# too), so a tool that needs another version of a runtime package fails the install instead of
# quietly changing it: the tests run what the image runs.
serving-install:
	$(PY) -m pip install --quiet --require-hashes -r $(SERVING_DIR)/requirements.lock
	sed -n 's/^\([A-Za-z0-9_.-]*==[^ ]*\).*/\1/p' $(SERVING_DIR)/requirements.lock > $(VENV)/serving-pins.txt
	$(PY) -m pip install --quiet -r $(SERVING_DIR)/requirements-test.txt -c $(VENV)/serving-pins.txt
	$(PY) -m pip install --quiet --no-deps -e $(SERVING_DIR)

lint-docker: $(STAMP)  ## hadolint every Dockerfile of the serving image (any finding fails)
	$(VENV)/bin/hadolint --failure-threshold info $(SERVING_DIR)/Dockerfile $(SERVING_DIR)/Dockerfile.edgetpu

# The root `make typecheck` covers the operator's packages; this covers the serving image and bench.
serving-typecheck: $(STAMP)  ## mypy --strict on modelserver and the benchmark scripts
	$(VENV)/bin/mypy --strict $(SERVING_DIR)/modelserver bench/serving.py bench/loadgen.py
	MYPYPATH=hack $(VENV)/bin/mypy --strict bench/rollback.py bench/images.py

$(BENCH_VENV)/.installed: bench/requirements-bench.lock
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet --require-hashes -r bench/requirements-bench.lock
	touch $@

bench-serving: $(STAMP) $(BENCH_VENV)/.installed  ## modelserver vs MLServer vs Flask -> bench/results/serving.json
	$(PY) bench/serving.py --bench-python $(BENCH_VENV)/bin/python --out bench/results/serving.json

serving-check: $(STAMP)  ## build the sample models and run `modelserver --check` on each
	tmp=$$(mktemp -d)
	trap 'rm -rf "$$tmp"' EXIT
	$(PY) -m modelserver.sample_models "$$tmp" | while read -r path sha; do
		env "$$path" "$$sha" $(PY) -m modelserver --check > /dev/null && echo "ok: $$path"
	done

# Regenerate the hashed locks after changing pyproject.toml or bench/requirements-bench.in.
serving-lock: $(STAMP)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile $(SERVING_DIR)/pyproject.toml -c $(SERVING_DIR)/lock-constraints.txt $(SERVING_LOCK_PLATFORM) \
		--custom-compile-command "make serving-lock" -o $(SERVING_DIR)/requirements.lock
	$(VENV)/bin/uv pip compile bench/requirements-bench.in $(SERVING_LOCK_PLATFORM) \
		--custom-compile-command "make serving-lock" -o bench/requirements-bench.lock

# This file is included before the root Makefile's targets: clear the default goal so the root's
# first target (help) stays the default rather than serving-install.
.DEFAULT_GOAL :=
