# The local world (hack/localworld): what its e2e tests and the demo need on the machine.
# Included from the root Makefile.

TEST_DEPS += prometheus

.PHONY: prometheus

# Debian's package; CI machines start fresh, so `make test` installs it (idempotent: a
# no-op when it is there). Without root, sudo is asked for.
prometheus:  ## install Prometheus (Debian's package) for the local world, if missing
	if command -v prometheus >/dev/null || test -x /usr/bin/prometheus; then exit 0; fi
	$(call apt_install,prometheus)
	/usr/bin/prometheus --version | head -1

.PHONY: demo

# Installs what it needs (each step a no-op when done), then runs the demo in the foreground;
# Ctrl-C tears everything down. Knobs: DEMO_ACTS, DEMO_BAD, DEMO_STEP_SECONDS, ... (docs/local-world.md).
demo: $(STAMP) prometheus cluster-bins traefik images  ## local cluster + world + operator: on the real node behind Traefik, operator via Helm: v1 -> v2, a bad v3 rolled back
	PYTHONPATH=hack exec $(PY) -m demo
