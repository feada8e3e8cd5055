# modelship developer entry points. `make test` is what CI runs (.ci/run).
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Debian packages the tests need, installed when missing (CI machines start fresh; without root,
# sudo is asked for). The package index is refreshed only when the first try fails.
apt_install = SUDO=$$(test "$$(id -u)" = 0 || echo sudo); export DEBIAN_FRONTEND=noninteractive; \
	$$SUDO apt-get install -y --no-install-recommends $(1) \
	|| { $$SUDO apt-get update && $$SUDO apt-get install -y --no-install-recommends $(1); }

# Component makefiles (e.g. serving-image/serving.mk) add to these:
INSTALL_DEPS :=   # files whose change re-runs the install
INSTALL_HOOKS :=  # targets run after the base install, inside the venv
TEST_DEPS :=      # targets `make test` runs before pytest (e.g. Dockerfile lint)
-include serving-image/serving.mk
-include hack/localworld/localworld.mk
-include hack/imagebuild/images.mk
TEST_DEPS += podschema
TEST_DEPS += gitops-tools
# The plugin's watch view is tested in a real terminal (tests/integration/test_plugin.py): tmux, from
# Debian, installed when missing (CI machines start fresh).
TEST_DEPS += tmux
tmux:
	command -v tmux >/dev/null && exit 0
	$(call apt_install,tmux)

.PHONY: tmux

# The dashboard's browser tests drive Debian's chromium through Playwright (tests/integration/
# test_dashboard.py): browser downloads are impossible here, so the system's, installed when missing.
TEST_DEPS += chromium
chromium:
	command -v chromium >/dev/null && exit 0
	$(call apt_install,chromium)

.PHONY: chromium
.PHONY: help venv cluster-bins traefik lua gitops-tools lint typecheck test test-unit cluster-up reap clean chart-crds podschema operator-lock lint-operator-image \
	bench bench-rollback bench-faults bench-scale

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

# Reinstalls only when the project's dependency files change.
$(STAMP): pyproject.toml $(INSTALL_DEPS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(foreach h,$(INSTALL_HOOKS),$(MAKE) --no-print-directory $(h);)
	touch $(STAMP)

venv: $(STAMP)  ## create .venv and install modelship with its dev tools

cluster-bins: $(STAMP)  ## build (or find cached) the local control plane binaries
	$(PY) hack/devcluster/build.py

lint: $(STAMP)  ## ruff, and the import contract that keeps modelship.core free of I/O (.importlinter)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd operator && ../$(VENV)/bin/lint-imports --config ../.importlinter

typecheck: $(STAMP)  ## mypy --strict
	$(VENV)/bin/mypy

test-unit: $(STAMP)  ## only the tests that need no cluster
	$(VENV)/bin/pytest -m unit

test: lint typecheck lint-operator-image $(TEST_DEPS) cluster-bins traefik  ## everything CI runs: lint, types, unit + integration + e2e
	$(PY) hack/testrun.py $(PYTEST_ARGS)

traefik: $(STAMP)  ## build (or find cached) Traefik, the local Gateway API data plane
	$(PY) hack/devcluster/traefik.py

cluster-up: cluster-bins  ## start a local cluster in the foreground (Ctrl-C tears it down)
	PYTHONPATH=hack $(PY) -m devcluster up

reap: $(STAMP)  ## remove what killed runs left (processes, containers, mounts, state dirs, host changes); never a live run's
	PYTHONPATH=hack $(PY) -m devcluster reap

bench-rollback: cluster-bins traefik prometheus images  ## time from a bad canary's first request to weight 0 -> bench/results/rollback.json
	$(PY) bench/rollback.py --out bench/results/rollback.json

bench-faults: cluster-bins traefik prometheus images  ## the fault suite's figures (kills, restarts, outages mid-rollout) -> bench/results/faults.json
	$(PY) bench/faults.py --out bench/results/faults.json

bench-scale: cluster-bins  ## one operator, N ModelDeployments on KWOK nodes (SCALE_N=100,300,1000,3000) -> bench/results/scale.json
	$(PY) bench/scale.py --out bench/results/scale.json

bench: bench-serving bench-rollback bench-faults bench-images  ## every benchmark; results in bench/results/

lint-operator-image: $(STAMP)  ## hadolint the operator's Dockerfile (any finding fails)
	$(VENV)/bin/hadolint --failure-threshold info operator/Dockerfile

podschema: $(STAMP)  ## spec.template's schema matches k8s.io/kubernetes's OpenAPI (fetches the module for the unit test)
	$(PY) -m modelship.podschema --check

# Debian's packages, for the tests of deploy/argocd (Argo CD runs Lua 5.1); a no-op when there.
lua:  ## install lua5.1 and lua-dkjson (Debian), if missing
	if command -v lua5.1 >/dev/null && test -f /usr/share/lua/5.1/dkjson.lua; then exit 0; fi
	$(call apt_install,lua5.1 lua-dkjson)

gitops-tools: $(STAMP) lua  ## Lua (Argo CD's health check and actions) and kstatus (Flux's view), built or cached
	$(PY) hack/devcluster/kstatus.py

chart-crds:  ## copy the generated CRD into the Helm chart (a test fails when they differ)
	cp crds/modelship.io_modeldeployments.yaml charts/modelship/crds/

# Regenerate the operator image's hashed lock after changing pyproject.toml's dependencies.
operator-lock: $(STAMP)
	$(PY) -m pip install --quiet uv==$(UV_VERSION)
	$(VENV)/bin/uv pip compile pyproject.toml $(SERVING_LOCK_PLATFORM) \
		--custom-compile-command "make operator-lock" -o operator/requirements.lock

clean:  ## remove the venv and caches in the repo (the binary cache outside stays)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
