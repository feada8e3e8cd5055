"""The real node's configuration files, as pure functions of where things live (realnode.py runs them).

Every setting here answers a fact about this kind of machine (docs/local-world.md, "The real node"):
cgroup v1 without systemd, negative oom_score_adj refused, no swap, no image registry, and pods
that must stay on a bridge inside the machine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# One real node per machine (the kubelet writes fixed host paths), so its addresses are fixed too,
# away from the service range 10.96.0.0/16, the KWOK pod networks 10.128-254.x and podman's 10.88.
NODE_NAME = "modelship-node"
NODE_IP = "10.76.0.1"  # a /32 of our own on `lo`: the kubelet refuses a loopback node IP
POD_SUBNET = "10.77.0.0/24"
POD_GATEWAY = "10.77.0.1"
BRIDGE = "msnode0"
CNI_NETWORK = "modelship-node"
CNI_BIN_DIR = "/usr/lib/cni"  # Debian's containernetworking-plugins
# Pods that must run for real (the e2e suites', the demo's) select this label; KWOK nodes lack it.
REAL_NODE_LABEL = "modelship.io/real-node"


@dataclass(frozen=True)
class Layout:
    """Where the node keeps its state: all under one directory, removed when the node stops."""

    root: Path

    @property
    def containerd_root(self) -> Path:
        return self.root / "containerd" / "root"

    @property
    def containerd_state(self) -> Path:
        return self.root / "containerd" / "state"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.root / "cni" / "net.d"

    @property
    def ipam_dir(self) -> Path:
        return self.root / "cni" / "ipam"

    @property
    def kubelet_root(self) -> Path:
        return self.root / "kubelet"

    @property
    def logs(self) -> Path:
        return self.root / "logs"


def containerd_config(layout: Layout, sandbox_image: str) -> str:
    """containerd 1.6's config (version 2) for the CRI plugin with runc on cgroupfs."""
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    return "\n".join(
        [
            "version = 2",
            f'root = "{layout.containerd_root}"',
            f'state = "{layout.containerd_state}"',
            "[grpc]",
            f'  address = "{layout.containerd_socket}"',
            "[ttrpc]",
            f'  address = "{layout.containerd_socket}.ttrpc"',
            # Nothing else on the machine may be managed by this containerd.
            '[plugins."io.containerd.internal.v1.opt"]',
            f'  path = "{layout.root / "containerd" / "opt"}"',
            f"[{cri}]",
            f'  sandbox_image = "{sandbox_image}"',
            # The machine refuses negative oom_score_adj; without this every sandbox fails.
            "  restrict_oom_score_adj = true",
            "  enable_selinux = false",
            f"[{cri}.containerd]",
            '  snapshotter = "overlayfs"',
            '  default_runtime_name = "runc"',
            f"[{cri}.containerd.runtimes.runc]",
            '  runtime_type = "io.containerd.runc.v2"',
            f"[{cri}.containerd.runtimes.runc.options]",
            # No systemd here: the kubelet and runc both use cgroupfs.
            "  SystemdCgroup = false",
            f"[{cri}.cni]",
            f'  bin_dir = "{CNI_BIN_DIR}"',
            f'  conf_dir = "{layout.cni_conf_dir}"',
            "  max_conf_num = 1",
            "",
        ]
    )


def cni_conflist(layout: Layout) -> dict[str, Any]:
    """A bridge with host-local addresses; pods reach the host (and through it the API server,
    Prometheus) via the gateway, and nothing is masqueraded off the machine."""
    return {
        "cniVersion": "0.4.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                "ipMasq": False,
                # A pod reaching itself through its own Service comes back on the same port.
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(layout.ipam_dir),
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": POD_GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }
        ],
    }


def kubelet_config(
    layout: Layout, port: int, healthz_port: int, client_ca: Path, max_pods: int = 60
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": NODE_IP,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(client_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{layout.containerd_socket}",
        # cgroup v1 without systemd: cgroupfs, and v1 allowed explicitly (1.35+ refuses it otherwise).
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        # True makes the kubelet fail instead of setting the three sysctls realnode records and restores.
        "protectKernelDefaults": False,
        "resolvConf": "",
        "clusterDNS": [],
        "maxPods": max_pods,
        "podPidsLimit": 4096,
        "serializeImagePulls": False,
        # Images are imported, never pulled: none may be garbage-collected or evicted away.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
        "nodeStatusUpdateFrequency": "5s",
        "nodeStatusReportFrequency": "30s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "0s",
        "staticPodPath": "",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 2,
        "registerNode": True,
        # Only pods that ask for the real node run here (namespace_pinning); the rest stay on KWOK's.
        "registerWithTaints": [{"key": REAL_NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
    }


def kubelet_args(layout: Layout, config: Path, kubeconfig: Path) -> list[str]:
    return [
        f"--config={config}",
        f"--kubeconfig={kubeconfig}",
        f"--root-dir={layout.kubelet_root}",
        f"--cert-dir={layout.kubelet_root / 'pki'}",
        f"--hostname-override={NODE_NAME}",
        f"--node-ip={NODE_IP}",
        f"--node-labels={REAL_NODE_LABEL}=true",
        "--v=1",
    ]


def kube_proxy_args(kubeconfig: Path, metrics_port: int, healthz_port: int) -> list[str]:
    return [
        f"--kubeconfig={kubeconfig}",
        "--proxy-mode=iptables",
        f"--hostname-override={NODE_NAME}",
        f"--bind-address={NODE_IP}",
        f"--cluster-cidr={POD_SUBNET}",
        f"--metrics-bind-address=127.0.0.1:{metrics_port}",
        f"--healthz-bind-address=127.0.0.1:{healthz_port}",
        # Leave the machine's conntrack sysctls as they are.
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        # NodePorts on 127.0.0.1 would need route_localnet=1 machine-wide.
        "--iptables-localhost-nodeports=false",
        # Without br_netfilter a reply between two pods on the bridge skips the Service's un-NAT;
        # masquerading every Service connection sends it back through the host instead.
        "--masquerade-all",
        "--v=1",
    ]


def namespace_pinning() -> dict[str, str]:
    """Annotations that send every pod of a namespace to the real node and tolerate its taint
    (the API server's PodNodeSelector and PodTolerationRestriction admission plugins)."""
    toleration = {"key": REAL_NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}
    return {
        "scheduler.alpha.kubernetes.io/node-selector": f"{REAL_NODE_LABEL}=true",
        "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps([toleration]),
    }


def dump_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"
