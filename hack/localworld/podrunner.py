"""The pod runner: the kubelet's part for pods of locally known serving images.

It watches all pods. A pod whose container image is in the catalogue is claimed (the
annotation devcluster.stages.RUNNER_ANNOTATION keeps KWOK from marking it Ready); once
KWOK has given it a pod IP, the runner starts a real `modelserver` process on that IP's
loopback twin (localworld.addresses) with the image's and the pod's environment, probes
the process's /readyz like a readiness probe and writes the result into the pod status.
When the pod is being deleted (or is gone) the process gets SIGTERM at once, then SIGKILL
after the grace period (waited for aside, so the watch keeps going).
Processes are not restarted after they exit: the pod stays not Ready, which is what a
crash-looping container looks like to everything that reads Ready.

KWOK hands a deleted pod's IP to the next pod at once, while the deleted pod's process may
still be shutting down on that address. A new process there would fail to bind (and the old
one would answer its readiness probes), so the runner starts a pod only once no other
process of its holds the pod's address and port; until then the pod waits, retried on
every probe tick.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from devcluster.stages import RUNNER_ANNOTATION
from localworld.addresses import loopback
from localworld.catalogue import Catalogue, Image, UnknownImage

log = logging.getLogger("localworld.podrunner")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Running:
    """One pod's process and what the runner last reported about it."""

    namespace: str
    name: str
    container: str
    image: str
    address: str
    port: int
    process: subprocess.Popen[bytes]
    started_at: str
    ready: bool | None = None  # last reported; None before the first report
    exit_reported: bool = False


def address_taken(address: str, port: int, uid: str, processes: list[tuple[str, Running]]) -> bool:
    """Whether a live process of another pod (running or shutting down) holds address:port."""
    return any(
        other != uid and run.address == address and run.port == port and run.process.poll() is None
        for other, run in processes
    )


def _env_of(container: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
    """The container's env: literal values, and the downward-API fields a modelserver may use."""
    fields = {
        "metadata.name": pod["metadata"]["name"],
        "metadata.namespace": pod["metadata"]["namespace"],
        "status.podIP": pod.get("status", {}).get("podIP", ""),
        "spec.nodeName": pod["spec"].get("nodeName", ""),
    }
    env: dict[str, str] = {}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = str(var["value"])
        elif path := (var.get("valueFrom") or {}).get("fieldRef", {}).get("fieldPath"):
            env[var["name"]] = fields.get(path, "")
    return env


def process_env(image: Image, container: dict[str, Any], pod: dict[str, Any], host: str) -> dict[str, str]:
    """The process's environment: image ENV, then the pod's, with the image's paths made local."""
    env = {**image.env, **_env_of(container, pod)}
    env["MODEL_PATH"] = str(image.host_path(env["MODEL_PATH"]))
    ports = container.get("ports") or []
    env.setdefault("PORT", str(ports[0]["containerPort"]) if ports else "8080")
    env["HOST"] = host  # the container's network namespace: its own address
    # The serving code is the repo's (installed in this interpreter's venv), not the host's env.
    base = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")}
    return {**base, "PYTHONUNBUFFERED": "1", **env}


@dataclass
class PodRunner:
    api: client.ApiClient
    catalogue: Catalogue
    log_dir: Path
    python: str = sys.executable
    probe_period: float = 0.5
    grace_seconds: float = 10.0
    running: dict[str, Running] = field(default_factory=dict)  # by pod uid
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _reapers: list[threading.Thread] = field(default_factory=list)
    _stopping: dict[str, Running] = field(default_factory=dict)  # by pod uid, until the process exits
    _waiting: dict[str, dict[str, Any]] = field(default_factory=dict)  # pods whose address is still taken
    _launching: threading.Lock = field(
        default_factory=threading.Lock
    )  # the watch and probe threads both launch
    _watch: watch.Watch | None = None

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for target in (self._watch_loop, self._probe_loop):
            t = threading.Thread(target=target, name=f"podrunner-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()  # type: ignore[no-untyped-call]
        # The watch thread may sit in a read until the API server's next event; it checks
        # _stop before acting, so it need not be waited for.
        for t in self._threads:
            t.join(timeout=1 if "watch" in t.name else 10)
        with self._lock:
            uids = list(self.running)
        for uid in uids:
            self._kill(uid)
        with self._lock:
            reapers = list(self._reapers)
        for reaper in reapers:
            reaper.join(timeout=self.grace_seconds + 5)

    def __enter__(self) -> PodRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- watching pods -------------------------------------------------------

    def _plain(self, obj: object) -> Any:
        """A client model as the plain JSON-shaped dict the API server sent."""
        return self.api.sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]

    def _watch_loop(self) -> None:
        while not self._stop.is_set():
            try:
                listed = self._plain(self.core.list_pod_for_all_namespaces())
                seen = {p["metadata"]["uid"] for p in listed["items"]}
                for pod in listed["items"]:
                    self.handle(pod)
                with self._lock:
                    gone = [uid for uid in self.running if uid not in seen]
                for uid in gone:
                    self._kill(uid)
                self._watch = watch.Watch()  # type: ignore[no-untyped-call]
                for event in self._watch.stream(  # type: ignore[no-untyped-call]
                    self.core.list_pod_for_all_namespaces,
                    resource_version=listed["metadata"]["resourceVersion"],
                    timeout_seconds=60,
                ):
                    if self._stop.is_set():
                        break
                    pod = self._plain(event["object"])
                    if event["type"] == "DELETED":
                        self._kill(pod["metadata"]["uid"])
                    else:
                        self.handle(pod)
            except Exception:  # a dropped watch or a 410: list again, as informers do
                if not self._stop.is_set():
                    log.exception("pod watch failed; listing again")
                    time.sleep(1)

    def _known_container(self, pod: dict[str, Any]) -> tuple[dict[str, Any], Image] | None:
        for container in pod["spec"]["containers"]:
            try:
                return container, self.catalogue.resolve(container["image"])
            except UnknownImage:
                continue
        return None

    def handle(self, pod: dict[str, Any]) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            self._kill(uid)
            return
        known = self._known_container(pod)
        if known is None or status.get("phase") in ("Succeeded", "Failed"):
            return
        if RUNNER_ANNOTATION not in (meta.get("annotations") or {}):
            self._claim(meta["namespace"], meta["name"])
        with self._lock:
            if uid in self.running:
                return
        if not pod["spec"].get("nodeName") or not status.get("podIP"):
            return  # KWOK's pod-create stage has not given it an address yet
        self._launch(pod, *known)

    def _claim(self, namespace: str, name: str) -> None:
        try:
            self.core.patch_namespaced_pod(
                name, namespace, {"metadata": {"annotations": {RUNNER_ANNOTATION: "true"}}}
            )
        except ApiException as err:
            if err.status != 404:
                raise

    # -- processes -----------------------------------------------------------

    def _launch(self, pod: dict[str, Any], container: dict[str, Any], image: Image) -> None:
        with self._launching:
            self._launch_once(pod, container, image)

    def _launch_once(self, pod: dict[str, Any], container: dict[str, Any], image: Image) -> None:
        meta = pod["metadata"]
        address = loopback(pod["status"]["podIP"])
        env = process_env(image, container, pod, address)
        with self._lock:
            if meta["uid"] in self.running:
                self._waiting.pop(meta["uid"], None)
                return
            holders = [*self.running.items(), *self._stopping.items()]
            if address_taken(address, int(env["PORT"]), meta["uid"], holders):
                self._waiting[meta["uid"]] = pod  # the probe loop retries
                return
            self._waiting.pop(meta["uid"], None)
        logfile = (self.log_dir / f"{meta['namespace']}_{meta['name']}.log").open("ab")
        process = subprocess.Popen(
            [self.python, "-m", "modelserver"],
            env=env,
            stdout=logfile,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C reaches the runner, which stops these in order
        )
        logfile.close()
        run = Running(
            meta["namespace"],
            meta["name"],
            container["name"],
            container["image"],
            address,
            int(env["PORT"]),
            process,
            _now(),
        )
        with self._lock:
            if self._stop.is_set():  # stopped meanwhile: stop() will not see this one
                process.kill()
                process.wait()
                return
            self.running[meta["uid"]] = run
        log.info("started %s/%s on %s:%s (pid %s)", run.namespace, run.name, address, run.port, process.pid)
        self._report(run, ready=False)

    def _kill(self, uid: str) -> None:
        with self._lock:
            self._waiting.pop(uid, None)
            run = self.running.pop(uid, None)
            if run is not None:
                self._stopping[uid] = run
        if run is None:
            return
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGTERM)
        # Waiting out the grace period happens aside: the watch thread must keep going.
        reaper = threading.Thread(
            target=self._reap, args=(run,), name=f"podrunner-reap-{run.name}", daemon=True
        )
        reaper.start()
        with self._lock:
            self._reapers = [r for r in self._reapers if r.is_alive()] + [reaper]

    def _reap(self, run: Running) -> None:
        try:
            run.process.wait(timeout=self.grace_seconds)
        except subprocess.TimeoutExpired:
            run.process.kill()
            run.process.wait()
        with self._lock:
            self._stopping = {uid: r for uid, r in self._stopping.items() if r is not run}
        log.info("stopped %s/%s (pid %s)", run.namespace, run.name, run.process.pid)

    # -- readiness -----------------------------------------------------------

    def _probe_loop(self) -> None:
        while not self._stop.wait(self.probe_period):
            with self._lock:
                waiting = list(self._waiting.values())
            for pod in waiting:
                known = self._known_container(pod)
                if known is not None:
                    self._launch(pod, *known)
            with self._lock:
                runs = list(self.running.values())
            for run in runs:
                try:
                    self._probe(run)
                except Exception:
                    log.exception("probing %s/%s failed", run.namespace, run.name)

    def _probe(self, run: Running) -> None:
        code = run.process.poll()
        if code is not None:
            if not run.exit_reported:
                run.exit_reported = True
                self._report(run, ready=False, exit_code=code)
            return
        try:
            url = f"http://{run.address}:{run.port}/readyz"
            with urllib.request.urlopen(url, timeout=1) as r:
                ready = r.status == 200
        except OSError:
            ready = False
        if ready != run.ready:
            self._report(run, ready=ready)

    def _report(self, run: Running, ready: bool, exit_code: int | None = None) -> None:
        now = _now()
        if exit_code is None:
            state: dict[str, Any] = {"running": {"startedAt": run.started_at}}
        else:
            state = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": "Completed" if exit_code == 0 else "Error",
                    "startedAt": run.started_at,
                    "finishedAt": now,
                }
            }
        flag = "True" if ready else "False"
        reason = {} if ready else {"reason": "ContainersNotReady", "message": f"[{run.container}] not ready"}
        body = {
            "status": {
                "phase": "Running",
                "conditions": [
                    {"type": t, "status": flag, "lastTransitionTime": now, **reason}
                    for t in ("Ready", "ContainersReady")
                ],
                "containerStatuses": [
                    {
                        "name": run.container,
                        "image": run.image,
                        "imageID": run.image,
                        "ready": ready,
                        "started": exit_code is None,
                        "restartCount": 0,
                        "state": state,
                    }
                ],
            }
        }
        try:
            self.core.patch_namespaced_pod_status(run.name, run.namespace, body)
            run.ready = ready
        except ApiException as err:
            if err.status != 404:
                raise

    def process_of(self, namespace: str, name: str) -> Running | None:
        with self._lock:
            for run in self.running.values():
                if (run.namespace, run.name) == (namespace, name):
                    return run
        return None
