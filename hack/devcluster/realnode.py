"""One real node in the local cluster: containerd, the kubelet, CNI and kube-proxy.

It runs pods of real images (imported from podman's storage into containerd; nothing is ever
pulled) beside the KWOK nodes, which stay for scheduling and scale tests. Every process is
started and stopped by its id, with its log under the node's state directory.

The kubelet writes fixed host paths whatever its root dir, so only one real node runs on a
machine (`hostchanges.claim_node`). Stopping the node leaves the machine as it was: pods are
deleted through the API server so the kubelet tears down their sandboxes, kube-proxy removes
its iptables rules (`--cleanup`), leftover shims, network namespaces, the bridge, mounts and
containerd's state are removed, and the sysctls the kubelet changed are restored.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import yaml

from devcluster import hostchanges, images, procs
from devcluster.net import free_port
from devcluster.nodeconfig import (
    BRIDGE,
    NODE_IP,
    NODE_NAME,
    Layout,
    cni_conflist,
    containerd_config,
    dump_json,
    kube_proxy_args,
    kubelet_args,
    kubelet_config,
)

COMPONENTS = ("containerd", "kubelet", "kube-proxy")
Kubectl = Callable[..., str]
# Health endpoints on loopback, whatever http_proxy says.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NodeError(RuntimeError):
    """The real node could not start; the message names the step and where the logs are."""


def _sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(cmd), capture_output=True, text=True, check=check)


def add_node_ip() -> None:
    if NODE_IP not in _sh("ip", "-4", "-o", "addr", "show", "dev", "lo").stdout:
        _sh("ip", "addr", "add", f"{NODE_IP}/32", "dev", "lo")


def mounts_under(root: Path) -> list[str]:
    """Mount points below `root`, deepest first."""
    prefix = str(root.resolve()) + "/"
    found = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target.startswith(prefix):
            found.append(target)
    return sorted(found, key=len, reverse=True)


def shim_pids(socket: Path) -> list[int]:
    """containerd-shim processes serving the containerd of `socket` (they outlive it)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and str(socket).encode() in cmdline:
            pids.append(int(proc.name))
    return pids


def kill_shims(socket: Path) -> list[int]:
    """SIGKILL the shims of one containerd and the containers under them; their pids."""
    shims = shim_pids(socket)
    victims = [*procs.children_of(shims), *shims]  # found before any dies and is reparented
    for pid in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return victims


def clean_node_dir(layout: Layout) -> list[int]:
    """What one node (running or killed) leaves that is its own: its shims and their containers,
    and the mounts below its state directory. Touches nothing of another node's; returns the
    pids killed."""
    killed = kill_shims(layout.containerd_socket)
    for target in mounts_under(layout.root):
        _sh("umount", "-l", target, check=False)
    return killed


def clean_machine() -> None:
    """What a node leaves machine-wide: processes in the kubelet's pod cgroups, CNI network
    namespaces, the bridge, KUBE-* iptables chains, the node address and the pod cgroups. Only for
    the holder of the node lock (hostchanges.claim_node): then no live node owns any of it."""
    for pid in _pod_cgroup_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    netns = Path("/run/netns")
    for ns in sorted(netns.glob("cni-*")) if netns.is_dir() else []:
        _sh("umount", "-l", str(ns), check=False)
        _sh("ip", "netns", "delete", ns.name, check=False)
    _sh("ip", "link", "delete", BRIDGE, check=False)
    remove_kube_chains()
    _sh("ip", "addr", "del", f"{NODE_IP}/32", "dev", "lo", check=False)
    _remove_pod_cgroups()


def clean_host(layout: Layout) -> None:
    """Remove what a node leaves on the machine. Safe to run twice, and on a killed run's leftovers."""
    clean_node_dir(layout)
    clean_machine()


def remove_kube_chains() -> None:
    """KUBE-* chains (the kubelet's canaries; kube-proxy's if its --cleanup did not run), with the
    rules that jump to them, in both address families."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = _sh(tool, "-t", table, "-S", check=False).stdout.splitlines()
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            if not chains:
                continue
            for rule in rules:
                if rule.startswith("-A ") and not rule.split()[1].startswith("KUBE-") and "-j KUBE-" in rule:
                    _sh(tool, "-t", table, "-D", *shlex.split(rule)[1:], check=False)
            for chain in chains:
                _sh(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _sh(tool, "-t", table, "-X", chain, check=False)


def _pod_cgroups() -> list[Path]:
    """The kubelet's /kubepods cgroups in every controller, deepest first."""
    found: list[Path] = []
    for controller in Path("/sys/fs/cgroup").iterdir():
        top = controller / "kubepods"
        if top.is_dir():
            found += [*sorted(top.rglob("*/"), key=lambda p: len(p.parts), reverse=True), top]
    return found


def _pod_cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for group in _pod_cgroups():
        with contextlib.suppress(OSError, ValueError):
            pids |= {int(line) for line in (group / "cgroup.procs").read_text().split()}
    return pids


def _remove_pod_cgroups() -> None:
    """The kubelet's /kubepods cgroups, deepest first (rmdir only removes empty ones)."""
    for d in _pod_cgroups():
        with contextlib.suppress(OSError):  # not empty: a process is still in it
            d.rmdir()


@dataclass
class RealNode:
    bin_dir: Path
    root: Path
    kubeconfigs: dict[str, Path]  # "node" (the kubelet's identity) and "kube-proxy"
    client_ca: Path
    kubectl: Kubectl
    children: dict[str, procs.Child] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    imported: dict[str, str] = field(default_factory=dict)  # podman ref -> ref@digest on the node
    _lock: TextIO | None = None

    @property
    def layout(self) -> Layout:
        return Layout(self.root)

    def prepare(self) -> None:
        """Claim the machine's one real node and put the node address on `lo`; before the API
        server starts, which listens on that address so pods can reach it."""
        self._lock = hostchanges.claim_node()
        hostchanges.mark_holder(self._lock, str(os.getpid()))
        try:
            clean_host(self.layout)  # a killed run's leftovers (we hold the lock: none is live)
            hostchanges.record()
            add_node_ip()
        except Exception:
            self.stop()
            raise

    def start(self, timeout: float = 90) -> None:
        try:
            sandbox = images.sandbox_image()
            self._write_configs(sandbox)
            self.start_component("containerd")
            self.load([sandbox])
            self.start_component("kubelet", timeout)
            self.start_component("kube-proxy")
        except Exception as err:
            self.stop()
            raise NodeError(f"{err}\n{self.describe_failure()}") from err

    def load(self, refs: Sequence[str]) -> dict[str, str]:
        """Import podman images onto the running node; returns ref -> what a pod's `image:` says
        for it (its repository at the digest containerd gives it)."""
        missing = [r for r in refs if r not in self.imported]
        if missing:
            self.imported |= images.import_into(self.layout.containerd_socket, missing)
        return {r: self.imported[r] for r in refs}

    def stop(self) -> None:
        self._drain()
        for name in ("kube-proxy", "kubelet"):
            self.stop_component(name)
        if (self.bin_dir / "kube-proxy").exists():
            # Removes the KUBE-* chains and rules kube-proxy wrote; harmless when there are none.
            _sh(str(self.bin_dir / "kube-proxy"), "--cleanup", check=False)
        clean_host(self.layout)
        self.stop_component("containerd")
        clean_host(self.layout)
        shutil.rmtree(self.layout.containerd_root, ignore_errors=True)
        shutil.rmtree(self.layout.containerd_state, ignore_errors=True)
        shutil.rmtree(self.layout.kubelet_root, ignore_errors=True)
        hostchanges.restore()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def describe_failure(self) -> str:
        lines = [f"node logs: {self.layout.logs}"]
        for name in COMPONENTS:
            log = self.layout.logs / f"{name}.log"
            if log.exists():
                lines += [f"--- {name} (last lines)", *log.read_text(errors="replace").splitlines()[-12:]]
        return "\n".join(lines)

    # -- one component ---------------------------------------------------------

    def stop_component(self, name: str, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """Stop containerd, the kubelet or kube-proxy by its pid (`sig`, SIGKILL after `timeout` s).
        Pods keep running: containerd's shims hold them, and the kubelet finds them again."""
        child = self.children.get(_known(name))
        if child is not None:
            child.stop(timeout, sig)

    def start_component(self, name: str, timeout: float = 30) -> None:
        """Start a stopped component again with the same arguments and ports; return once healthy."""
        child = self.children[_known(name)]
        child.start()
        self._wait(f"{name} healthy", lambda: self._healthy(name), timeout)

    # -- steps -----------------------------------------------------------------

    def _write_configs(self, sandbox_image: str) -> None:
        layout = self.layout
        for d in (layout.logs, layout.cni_conf_dir, layout.containerd_root, layout.kubelet_root):
            d.mkdir(parents=True, exist_ok=True)
        (layout.root / "containerd.toml").write_text(containerd_config(layout, sandbox_image))
        (layout.cni_conf_dir / "10-modelship.conflist").write_text(dump_json(cni_conflist(layout)))
        for port in ("kubelet", "kubelet-healthz", "kube-proxy-metrics", "kube-proxy-healthz"):
            self.ports[port] = free_port()
        config = kubelet_config(layout, self.ports["kubelet"], self.ports["kubelet-healthz"], self.client_ca)
        (layout.root / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        kubelet = kubelet_args(self.layout, self.root / "kubelet.yaml", self.kubeconfigs["node"])
        proxy = kube_proxy_args(
            self.kubeconfigs["kube-proxy"], self.ports["kube-proxy-metrics"], self.ports["kube-proxy-healthz"]
        )
        argv = {
            "containerd": ["containerd", "--config", str(self.root / "containerd.toml")],
            "kubelet": [str(self.bin_dir / "kubelet"), *kubelet],
            "kube-proxy": [str(self.bin_dir / "kube-proxy"), *proxy],
        }
        self.children = {
            name: procs.Child(name, args, layout.logs / f"{name}.log", self.root)
            for name, args in argv.items()
        }

    def _alive(self, name: str) -> None:
        child = self.children[name]
        if not child.running:
            raise NodeError(f"{name} exited with code {child.returncode}")

    def _wait(self, what: str, probe: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not probe():
            if time.monotonic() > deadline:
                raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(0.2)

    def _healthy(self, name: str) -> bool:
        self._alive(name)
        if name == "containerd":
            sock = self.layout.containerd_socket
            return sock.exists() and _sh("ctr", "-a", str(sock), "version", check=False).returncode == 0
        if name == "kubelet":
            # Ready stays True through a restart (nothing marks the node NotReady in a few
            # seconds): the kubelet's own health endpoint says when it works again.
            return _http_status(self.ports["kubelet-healthz"]) == 200 and self._node_ready()
        # Its chain (left by the process before a restart) and its health server up: whether it
        # answers 200 depends on each address family's sync, which is not ours to wait for.
        rules = _sh("iptables", "-t", "nat", "-S", "KUBE-SERVICES", check=False)
        return rules.returncode == 0 and _http_status(self.ports["kube-proxy-healthz"]) is not None

    def _node_ready(self) -> bool:
        out = self.kubectl("get", "node", NODE_NAME, "-o", "json", check=False)
        if not out:
            return False
        conditions = json.loads(out)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _drain(self) -> None:
        """Delete every pod on the node while the kubelet still runs, so it tears their sandboxes
        down itself (CNI DEL, unmounts); what it leaves, clean_host removes."""
        if "kubelet" not in self.children or not self.children["kubelet"].running:
            return
        selector = f"spec.nodeName={NODE_NAME}"
        self.kubectl(
            "delete",
            "pods",
            "-A",
            "--field-selector",
            selector,
            "--grace-period=1",
            "--wait=false",
            check=False,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = self.kubectl("get", "pods", "-A", "--field-selector", selector, "-o", "name", check=False)
            if not left.strip():
                return
            time.sleep(0.5)


def _known(name: str) -> str:
    if name not in COMPONENTS:
        raise ValueError(f"unknown node component {name!r}; known: {', '.join(COMPONENTS)}")
    return name


def _http_status(port: int) -> int | None:
    """What /healthz on a loopback port answers, None while nothing does."""
    try:
        with _DIRECT.open(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None
