"""Prometheus (Debian's package) scraping the local world's serving pods.

It discovers pods through the API server: Debian builds Prometheus without
`kubernetes_sd_configs`, so localworld.discovery serves the same `role: pod` targets and
labels over `http_sd_configs`. It keeps pods labelled `modelship.io/model` on their port named
`http`, and copies the pod labels `modelship.io/revision` and `modelship.io/model` to
`revision` and `model`: the same relabelling as the Helm chart's PodMonitor and
docs/metrics.md (RECOMMENDED_RELABELINGS). Pods run on the real node, so their IPs are
reachable from this machine as they are.
"""

from __future__ import annotations

import json
import shutil
import signal
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from devcluster import procs
from devcluster.net import free_port
from localworld.discovery import PodDiscovery

INSTALL_HINT = "install it with `make prometheus` (Debian: apt-get install prometheus)"
DEFAULT_INTERVAL = "2s"

# What every scrape of model pods keeps (docs/metrics.md "Scrape config"; the chart's PodMonitor).
RECOMMENDED_RELABELINGS: list[dict[str, Any]] = [
    {"source_labels": ["__meta_kubernetes_pod_label_modelship_io_revision"], "target_label": "revision"},
    {"source_labels": ["__meta_kubernetes_pod_label_modelship_io_model"], "target_label": "model"},
    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
]
# Which targets: pods with the model label, on the container port the operator names `http`.
SELECT_MODEL_PODS: list[dict[str, Any]] = [
    {
        "source_labels": ["__meta_kubernetes_pod_labelpresent_modelship_io_model"],
        "regex": "true",
        "action": "keep",
    },
    {"source_labels": ["__meta_kubernetes_pod_container_port_name"], "regex": "http", "action": "keep"},
]


class PrometheusMissing(RuntimeError):
    """The prometheus binary is not installed."""


def recommended_job(interval: str = DEFAULT_INTERVAL) -> dict[str, Any]:
    """The scrape job for model pods in a real cluster (in-cluster service account)."""
    return {
        "job_name": "modelship-serving",
        "scrape_interval": interval,
        "metrics_path": "/metrics",
        "kubernetes_sd_configs": [{"role": "pod"}],
        "relabel_configs": [*SELECT_MODEL_PODS, *RECOMMENDED_RELABELINGS],
    }


def local_config(discovery_url: str, interval: str = DEFAULT_INTERVAL) -> dict[str, Any]:
    """The recommended job with Debian's Prometheus: pods come from localworld.discovery over
    `http_sd_configs` (same labels as `kubernetes_sd_configs`)."""
    job = recommended_job(interval)
    del job["kubernetes_sd_configs"]
    # Half a second: Kubernetes SD learns of a new pod from a watch, at once; HTTP SD has to poll.
    job["http_sd_configs"] = [{"url": discovery_url, "refresh_interval": "500ms"}]
    return {"global": {"scrape_interval": interval, "evaluation_interval": interval}, "scrape_configs": [job]}


def binary() -> str:
    found = shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None
    )
    if found is None:
        raise PrometheusMissing(f"prometheus is not on PATH: {INSTALL_HINT}")
    return found


@dataclass
class Prometheus:
    """One Prometheus process on a free port of `host`, its data in `state_dir`. The host is the
    real node's address when the operator runs as a pod and queries it from there."""

    api: client.ApiClient
    state_dir: Path
    interval: str = DEFAULT_INTERVAL
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    child: procs.Child | None = None
    discovery: PodDiscovery | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 60) -> None:
        exe = binary()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.discovery = PodDiscovery(self.api)
        self.discovery.start()
        config = self.state_dir / "prometheus.yml"
        config.write_text(yaml.safe_dump(local_config(self.discovery.url, self.interval), sort_keys=False))
        argv = [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={self.state_dir / 'data'}",
            f"--web.listen-address={self.host}:{self.port}",
            "--storage.tsdb.retention.time=2h",
        ]
        self.child = procs.Child("prometheus", argv, self.state_dir / "prometheus.log", self.state_dir)
        self.start_process(timeout)

    def start_process(self, timeout: float = 60) -> None:
        """Start the process (again, after stop_process) with the same config, port and data;
        return once it is ready. Pod discovery runs on in this process meanwhile."""
        if self.child is None:
            raise RuntimeError("Prometheus has not been started")
        self.child.start()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if not self.child.running:
                raise RuntimeError(
                    f"prometheus exited ({self.child.returncode}); see {self.state_dir}/prometheus.log"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"prometheus not ready after {timeout:.0f}s; see {self.state_dir}/prometheus.log"
                )
            time.sleep(0.2)

    def stop_process(self, timeout: float = 15, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its pid (`sig`, then SIGKILL after `timeout` s); start_process
        starts it again."""
        if self.child is not None:
            self.child.stop(timeout, sig)

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        self.stop_process()
        if self.discovery is not None:
            self.discovery.stop()
            self.discovery = None

    def __enter__(self) -> Prometheus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """An instant query's result vector: [{"metric": {...}, "value": [ts, "v"]}, ...]."""
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result
