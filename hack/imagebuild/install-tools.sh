#!/usr/bin/env bash
# Installs the container tools `make images` and the real node use, from Debian's packages. CI machines start
# fresh, so this runs on every `make images`; it is a no-op when everything is there.
set -euo pipefail
# command -> Debian package; runc because crun refuses this machine's hybrid cgroups.
declare -A wanted=(
	[podman]=podman [buildah]=buildah [runc]=runc [skopeo]=skopeo [umoci]=umoci
	[debootstrap]=debootstrap [conmon]=conmon [iptables]=iptables
	# The local cluster's real node (hack/devcluster/realnode.py).
	[containerd]=containerd [ctr]=containerd
)
missing=()
for cmd in "${!wanted[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${wanted[$cmd]}")
done
# Needed for `podman run -p` (bridge networking); there is no command to look for.
test -x /usr/lib/cni/bridge || missing+=(containernetworking-plugins)
if ((${#missing[@]} == 0)); then exit 0; fi
SUDO=$(test "$(id -u)" = 0 || echo sudo)
export DEBIAN_FRONTEND=noninteractive
echo "installing: ${missing[*]}" >&2
# A fresh machine's package lists may be empty or stale: update once when the install fails.
$SUDO apt-get install -y --no-install-recommends "${missing[@]}" \
	|| { $SUDO apt-get update && $SUDO apt-get install -y --no-install-recommends "${missing[@]}"; }
