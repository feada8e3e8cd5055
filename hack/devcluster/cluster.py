"""A real Kubernetes control plane on loopback, with KWOK fake nodes.

`LocalCluster` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler
and the KWOK controller from the cached build (build.py), each on a free port, with
certificates made on the fly; creates the fake nodes; installs the Gateway API CRDs;
writes an admin kubeconfig; and waits until the API server is ready, the nodes are
Ready and the controllers are working. `stop()` ends every process by its id.

Every process is a `devcluster.procs.Child`: it dies with the process that started the cluster,
and it is recorded in the state directory, which names that process as its owner. A start first
reaps the state directories of runs whose owner is gone (devcluster.reap). `restart(component)`,
or `stop_component` and `start_component` apart, stop one component by its pid and start it
again with the same arguments and ports, for fault tests.

`ExistingCluster` is the same interface over a cluster named by a kubeconfig
(kind, k3d, a cloud cluster), started and stopped by someone else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from devcluster import build, nodeconfig, nodes, pki, procs, realnode, reap
from devcluster.net import free_port
from devcluster.procs import terminate as terminate  # re-exported: suites stop their own processes
from devcluster.realnode import RealNode

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"
T = TypeVar("T")

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


class ClusterError(RuntimeError):
    """The cluster could not be started; the message names the step and where the logs are."""


class KubectlError(RuntimeError):
    """A kubectl command failed; the message carries its stderr."""


def write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "modelship-dev", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "modelship-dev", "context": {"cluster": "modelship-dev", "user": user}}],
        "current-context": "modelship-dev",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.25) -> T:
    """Poll `probe` until it returns something truthy and return that; the tests wait with it too.

    Raises TimeoutError naming `what` and the probe's last value."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def _direct(tls: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """An opener for the components' health endpoints, whatever http(s)_proxy say."""
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if tls is not None:
        handlers.append(urllib.request.HTTPSHandler(context=tls))
    return urllib.request.build_opener(*handlers)


@dataclass
class ExistingCluster:
    """A cluster someone else runs, reached through a kubeconfig."""

    kubeconfig: Path
    bin_dir: Path

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses (kubectl, helm, the operator) talking to this cluster."""
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        }

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> str:
        done = subprocess.run(
            [str(self.bin_dir / "kubectl"), *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and done.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def start(self) -> None:
        """Nothing to start: the cluster is already there."""

    def stop(self) -> None:
        """Nothing to stop: the cluster belongs to someone else."""


@dataclass
class LocalCluster(ExistingCluster):
    """A control plane of our own on loopback. Use as a context manager or call start()/stop()."""

    state_dir: Path = field(default_factory=reap.new_state_dir)
    fake_nodes: Sequence[nodes.FakeNode] = field(default_factory=nodes.default_nodes)
    artifacts: Path = field(default_factory=lambda: build.cache_dir())
    keep_state: bool = False
    # One real node (containerd, kubelet, kube-proxy) beside the fake ones; one per machine.
    real_node: bool = False
    node: RealNode | None = None
    children: dict[str, procs.Child] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    _keys: pki.Pki | None = None

    @classmethod
    def create(cls, **kwargs: Any) -> LocalCluster:
        """Build (or find cached) binaries and return a cluster ready to start()."""
        artifacts = build.build()
        state = reap.new_state_dir()
        return cls(
            kubeconfig=state / "admin.kubeconfig",
            bin_dir=artifacts / "bin",
            state_dir=state,
            artifacts=artifacts,
            **kwargs,
        )

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def address(self) -> str:
        """Where the API server listens: the node address when pods must reach it too."""
        return nodeconfig.NODE_IP if self.real_node else "127.0.0.1"

    @property
    def server(self) -> str:
        return f"https://{self.address}:{self.ports['apiserver']}"

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        # What killed runs left (never a live run's), before this one adds its own.
        reap.reap(self.state_dir.parent, machine=True)
        procs.claim(self.state_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for name in ("etcd", "etcd-peer", "apiserver", "controller-manager", "scheduler", "kwok"):
            self.ports[name] = free_port()
        keys = self._keys = pki.generate(self.state_dir / "pki", SERVICE_IP)
        for stem, _, _ in pki.CLIENTS:
            path = self.kubeconfig if stem == "admin" else self.state_dir / f"{stem}.kubeconfig"
            write_kubeconfig(path, self.server, keys.ca, keys.cert(stem), keys.key(stem), stem)
        try:
            if self.real_node:
                self.node = RealNode(
                    bin_dir=self.bin_dir,
                    root=self.state_dir / "node",
                    kubeconfigs={s: self.state_dir / f"{s}.kubeconfig" for s in ("node", "kube-proxy")},
                    client_ca=keys.ca,
                    kubectl=self.kubectl,
                )
                self.node.prepare()
            self.children = {
                name: procs.Child(
                    name, [str(self.bin_dir / name), *args], self.log_dir / f"{name}.log", self.state_dir
                )
                for name, args in self._arguments(keys).items()
            }
            self.start_component("etcd", 30)
            self.start_component("kube-apiserver", 90)
            for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
                self.children[name].start()
            self._create_nodes()
            self._install_gateway_api()
            self._wait_ready()
            if self.node is not None:
                self.node.start()
        except Exception as err:
            self.stop(keep=True)
            raise ClusterError(f"{err}\n{self.describe_failure()}") from err

    def stop(self, keep: bool | None = None) -> None:
        """Stop the real node (while the API server still runs, to drain it), then SIGTERM every
        component (newest first, etcd last), SIGKILL what is left after 10 s."""
        if self.node is not None:
            # Nothing may replace or place the pods the drain deletes.
            for name in ("kube-controller-manager", "kube-scheduler"):
                if name in self.children:
                    self.children[name].stop(timeout=10)
            self.node.stop()
            self.node = None
        # etcd only once the rest has exited: an API server that loses etcd mid-shutdown waits
        # ~10 s on it (SIGTERMed together, every stop took 11 s; one after the other, 1 s).
        newest_first = list(reversed(self.children.values()))
        procs.stop_all([c for c in newest_first if c.name != "etcd"], timeout=10)
        procs.stop_all([c for c in newest_first if c.name == "etcd"], timeout=10)
        self.children.clear()
        if not (self.keep_state if keep is None else keep):
            shutil.rmtree(self.state_dir, ignore_errors=True)
        elif self.state_dir.exists():
            procs.release(self.state_dir)  # kept for its logs: nothing in it is left to reap
        for network in {n for n in map(nodes.network_of, self.fake_nodes) if n is not None}:
            nodes.release_pod_network(network)

    def describe_failure(self) -> str:
        lines = [f"component logs: {self.log_dir}"]
        for name in COMPONENTS:
            log = self.log_dir / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-15:]
                lines += [f"--- {name} (last lines)", *tail]
        return "\n".join(lines)

    # -- one component, for fault tests ----------------------------------------

    @property
    def components(self) -> tuple[str, ...]:
        """What `restart` takes: the control plane's parts, and the real node's when there is one."""
        return COMPONENTS + (realnode.COMPONENTS if self.node is not None else ())

    def stop_component(self, name: str, timeout: float = 10, sig: int = signal.SIGTERM) -> None:
        """Stop one component by its pid: `sig` (SIGTERM; SIGKILL for a crash), then SIGKILL if it
        still runs after `timeout` seconds. It stays down until start_component(name)."""
        if name in self._node_components():
            assert self.node is not None
            self.node.stop_component(name, timeout, sig)
            return
        self.children[self._known(name)].stop(timeout, sig)

    def start_component(self, name: str, timeout: float = 60) -> None:
        """Start a stopped component again, with the same arguments and ports, and return once it
        is healthy (and, when it is not the API server itself, once the API server is ready)."""
        if name in self._node_components():
            assert self.node is not None
            self.node.start_component(name, timeout)
            return
        self.children[self._known(name)].start()
        wait_for(f"{name} healthy", lambda: self._healthy(name), timeout)
        if name != "kube-apiserver" and self.children["kube-apiserver"].running:
            wait_for("kube-apiserver /readyz", lambda: self._healthy("kube-apiserver"), timeout)

    def restart(self, name: str, timeout: float = 60, sig: int = signal.SIGTERM) -> None:
        """stop_component, then start_component: the same process again, on the same ports."""
        self.stop_component(name, sig=sig)
        self.start_component(name, timeout)

    def _known(self, name: str) -> str:
        if name not in self.children:
            raise ValueError(f"unknown component {name!r}; known: {', '.join(self.components)}")
        return name

    def _node_components(self) -> tuple[str, ...]:
        return realnode.COMPONENTS if self.node is not None else ()

    def _alive(self, name: str) -> None:
        child = self.children[name]
        if not child.running:
            raise ClusterError(f"{name} exited with code {child.returncode}")

    def _healthy(self, name: str) -> bool:
        """The component's own health endpoint answers 200 (raises when its process has exited)."""
        self._alive(name)
        if name == "etcd":
            try:
                with _direct(None).open(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=1) as r:
                    return bool(json.load(r).get("health") == "true")
            except OSError:
                return False
        url = {
            "kube-apiserver": f"{self.server}/readyz",
            "kube-controller-manager": f"https://127.0.0.1:{self.ports['controller-manager']}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{self.ports['scheduler']}/healthz",
            "kwok": f"http://127.0.0.1:{self.ports['kwok']}/healthz",
        }[name]
        try:
            with _direct(self._tls(name)).open(url, timeout=2) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def _tls(self, name: str) -> ssl.SSLContext | None:
        if name == "kwok":
            return None
        assert self._keys is not None
        if name != "kube-apiserver":
            # They make their own self-signed serving certificates; /healthz is open to anyone.
            unverified = ssl.create_default_context()
            unverified.check_hostname = False
            unverified.verify_mode = ssl.CERT_NONE
            return unverified
        ctx = ssl.create_default_context(cafile=str(self._keys.ca))
        ctx.load_cert_chain(str(self._keys.cert("admin")), str(self._keys.key("admin")))
        return ctx

    # -- components ----------------------------------------------------------

    def _arguments(self, keys: pki.Pki) -> dict[str, list[str]]:
        """Each component's arguments, in start order; a restart passes the same ones."""
        client, peer = f"http://127.0.0.1:{self.ports['etcd']}", f"http://127.0.0.1:{self.ports['etcd-peer']}"
        etcd = [
            "--name=devcluster",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=devcluster={peer}",
            "--unsafe-no-fsync",  # throwaway data: speed over durability
            "--log-level=warn",
        ]
        apiserver = [
            f"--etcd-servers={client}",
            f"--secure-port={self.ports['apiserver']}",
            f"--bind-address={self.address}",
            # With no default route the API server cannot pick an address by itself.
            f"--advertise-address={self.address}",
            *self._apiserver_node_args(keys),
            f"--tls-cert-file={keys.cert('apiserver')}",
            f"--tls-private-key-file={keys.key('apiserver')}",
            f"--client-ca-file={keys.ca}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={keys.dir / 'service-account.pub'}",
            f"--service-account-signing-key-file={keys.key('service-account')}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--authorization-mode={'Node,RBAC' if self.real_node else 'RBAC'}",
            # New nodes would get a not-ready taint that only the node-lifecycle
            # controller removes, and that controller is off (see below).
            "--disable-admission-plugins=TaintNodesByCondition",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]
        return {
            "etcd": etcd,
            "kube-apiserver": apiserver,
            **self._controller_arguments(keys),
        }

    def _apiserver_node_args(self, keys: pki.Pki) -> list[str]:
        if not self.real_node:
            # No kube-proxy, and 127.0.0.1 endpoints for `kubernetes` fail validation.
            return ["--endpoint-reconciler-type=none"]
        return [
            # `kubernetes` gets the node address as endpoint: in-cluster clients reach it via kube-proxy.
            "--endpoint-reconciler-type=lease",
            # The node's name does not resolve; its InternalIP does (kubectl logs/exec).
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-client-certificate={keys.cert('kubelet-client')}",
            f"--kubelet-client-key={keys.key('kubelet-client')}",
            # Namespaces that must run for real pin their pods to the real node (see REAL_NODE_LABEL).
            "--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction",
        ]

    def _controller_arguments(self, keys: pki.Pki) -> dict[str, list[str]]:
        def common(stem: str, port: int) -> list[str]:
            kc = self.state_dir / f"{stem}.kubeconfig"
            return [
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--leader-elect=false",
            ]

        controller_manager = [
            *common("controller-manager", self.ports["controller-manager"]),
            # Each controller acts as its own service account, with the rights
            # bootstrap RBAC gives it (Deployments, ReplicaSets, EndpointSlices, GC ...).
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={keys.key('service-account')}",
            f"--root-ca-file={keys.ca}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            # Fake nodes never really fail, so nothing may declare them dead. On a loaded
            # CI machine KWOK's node leases went stale for minutes even with a 3m grace:
            # the node-lifecycle controller then marked every pod NotReady, and KWOK
            # never marks them Ready again (kubernetes-sigs/kwok#1464). Without it, a
            # node is Ready as KWOK's stages say, and never tainted.
            "--controllers=*,-node-lifecycle-controller",
            # HPAs act within seconds, not the default 15 s: the scaling tests wait for them.
            "--horizontal-pod-autoscaler-sync-period=3s",
            "--v=1",
        ]
        # KWOK's stock stages, as cached by build.py; it manages only the fake nodes and their pods.
        stage_files = sorted((self.artifacts / "kwok-stages").glob("*.yaml"))
        kwok = [
            f"--kubeconfig={self.state_dir / 'kwok.kubeconfig'}",
            *(f"--config={s}" for s in stage_files),
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
            f"--server-address=127.0.0.1:{self.ports['kwok']}",
            "--node-ip=127.0.0.1",
        ]
        return {
            "kube-controller-manager": controller_manager,
            "kube-scheduler": [*common("scheduler", self.ports["scheduler"]), "--v=1"],
            "kwok": kwok,
        }

    def _create_nodes(self) -> None:
        items = [n.manifest() for n in self.fake_nodes]
        self.kubectl(
            "create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items})
        )

    def _install_gateway_api(self) -> None:
        crds = str(self.artifacts / "gateway-api")
        self.kubectl("apply", "--server-side", "--field-manager=modelship-devcluster", "-f", crds)
        # The bundle also holds a ValidatingAdmissionPolicy, which has no Established condition.
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def _wait_ready(self) -> None:
        if self.fake_nodes:
            self.kubectl("wait", "--for=condition=Ready", "node", "--all", "--timeout=90s")

        def controllers_working() -> bool:
            for name in COMPONENTS:
                self._alive(name)
            # The service-account controller creating `default` proves the
            # controller-manager is up and authorized.
            return self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False) != ""

        wait_for("the controller-manager to create the default ServiceAccount", controllers_working, 60)
