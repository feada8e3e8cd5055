"""One scenario's namespace (`Bed`): its own operator process, ModelDeployments, load and a
`Recorder` of their status; and the pods' containers to kill."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.cluster import LocalCluster, wait_for
from loadgen import Load
from loadgen.mix import holdout_samples
from localworld import crashpoint
from localworld.faults.canaries import RATE
from localworld.faults.figures import (
    Figures,
    Sample,
    failures_at,
    normalized_final,
    pauses_cut_short,
    rollout_events,
    step_figures,
    weight_regressions,
)
from localworld.rollouts import ModelDeployments, OperatorProcess, at, model_deployment, revision
from localworld.world import Endpoint, LocalWorld, pin_namespace


class Recorder:
    """Samples a ModelDeployment, its route and its canary Service every 0.25 s in a thread."""

    def __init__(self, bed: Bed, name: str, deployments: bool = False) -> None:
        self.bed, self.name, self.deployments = bed, name, deployments
        self.samples: list[Sample] = []
        self.errors_before = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Recorder:
        # Requests that failed before the rollout (Traefik learning a new route) are not its own.
        load = self.bed.loads.get(self.name)
        self.errors_before = load.summary().errors if load else 0
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            with contextlib.suppress(Exception):  # the API server may be the fault
                self.samples.append(self.bed.sample(self.name, self.deployments))

    def shown(self, what: str, done: Callable[[Sample], bool], timeout: float = 10) -> None:
        """Wait until a sample shows `done`: the figures count from samples, which trail the
        status by up to one sampling round (a slow one under load)."""
        wait_for(f"a sample showing {what}", lambda: bool(self.samples) and done(self.samples[-1]), timeout)

    def during(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.t <= end]


class Bed:
    """A namespace on the real node with an operator process of its own, ModelDeployments behind
    routes of their own, and load; everything stopped and deleted by `close`."""

    def __init__(
        self, world: LocalWorld, api: client.ApiClient, cluster: LocalCluster, scenario: str, logs: Path
    ) -> None:
        self.world, self.api, self.scenario = world, api, scenario
        self.namespace = f"faults-{scenario}-{uuid.uuid4().hex[:5]}"
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.mds = ModelDeployments(api, self.namespace)
        self.loads: dict[str, Load] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.arm_file = logs / f"{self.namespace}.arm"
        env = crashpoint.hook_env(dict(cluster.env), self.arm_file)
        self.operator = OperatorProcess(
            env,
            logs / f"operator-{self.namespace}.log",
            namespaces=[self.namespace],
            args=["--prometheus-address", world.prometheus.url],
        )

    def __enter__(self) -> Bed:
        self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=self.namespace)))
        wait_for(
            f"namespace {self.namespace}'s default ServiceAccount",
            lambda: (
                self.core.list_namespaced_service_account(
                    self.namespace, field_selector="metadata.name=default"
                ).items
            ),
            timeout=30,
        )
        pin_namespace(self.api, self.namespace)
        self.operator.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for load in self.loads.values():
            load.stop()
        self.operator.stop()
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespace(self.namespace)

    # -- ModelDeployments ---------------------------------------------------------------------

    def deploy(
        self, name: str, steps: list[dict[str, Any]], analysis: dict[str, Any] | None = None, **spec: Any
    ) -> str:
        """ModelDeployment `name` on v1 (one replica), Healthy; returns its stable revision."""
        manifest = model_deployment(name, self.world.image("v1"), "v1", steps, replicas=1, analysis=analysis)
        manifest["spec"].update(spec)
        self.endpoints[name] = self.world.expose(self.namespace, name)
        self.mds.create(manifest)
        return str(self.mds.wait_phase(name, "Healthy", timeout=120)["stableRevision"])

    def load(self, name: str, rate: float = RATE) -> Load:
        """Background load through Traefik until the bed closes; returns once v1 answers."""
        endpoint = self.endpoints[name]
        load = Load(
            f"{endpoint.url}/predict", holdout_samples(), rate, 900, feedback_ratio=0.5, host=endpoint.host
        )
        self.loads[name] = load.start()
        wait_for(
            f"{name} to answer through Traefik", lambda: load.summary().codes.get(200, 0) >= 10, timeout=60
        )
        return load

    def image_spec(self, name: str, image: str, version: str | None = None) -> dict[str, Any]:
        """The spec change to `image`: a demo model image by name, or any reference with v1's model."""
        if image in self.world.images:
            ref, model_version, sha = self.world.image(image).ref, image, self.world.image(image).model_sha256
        else:
            ref, model_version, sha = image, version or "never", self.world.image("v1").model_sha256
        return {"image": ref, "model": {"name": name, "version": model_version, "sha256": sha}}

    def roll(self, name: str, image: str, version: str | None = None) -> tuple[int, str]:
        """Patch the image (`image_spec`); the new generation and the revision it asks for."""
        obj = self.mds.patch(name, self.image_spec(name, image, version))
        return int(obj["metadata"]["generation"]), revision(obj)

    def status(self, name: str) -> dict[str, Any]:
        return self.mds.status(name)

    def pods(self) -> list[Any]:
        found: list[Any] = self.core.list_namespaced_pod(self.namespace).items
        return found

    def route(self, name: str) -> dict[str, int]:
        route: Any = self.custom.get_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", self.namespace, "httproutes", name
        )
        refs = (route.get("spec", {}).get("rules") or [{}])[0].get("backendRefs") or []
        return {r["name"]: int(r.get("weight", 1)) for r in refs}

    def sample(self, name: str, deployments: bool = False) -> Sample:
        """One sample, read again when a pass wrote the status meanwhile (its route and Services
        may then be a pass behind the status: `_sample` reads them first)."""
        for _ in range(3):
            taken = self._sample(name, deployments)
            again = (self.mds.get(name) or {}).get("metadata", {}).get("resourceVersion")
            if again == taken[1]:
                break
        return taken[0]

    def _sample(self, name: str, deployments: bool) -> tuple[Sample, str | None]:
        # The route and the Services before the status: a pass writes its status before them, so
        # a status read last is at least as new as what they show (a route read after a status
        # would show a pass's weights beside the status from before it).
        route = self.route(name)
        try:
            service: Any = self.core.read_namespaced_service(f"{name}-canary", self.namespace)
            selector = service.spec.selector or {}
        except client.ApiException:
            selector = {}
        live: tuple[str, ...] = ()
        if deployments:
            found: list[Any] = self.apps.list_namespaced_deployment(self.namespace).items
            live = tuple(
                sorted(
                    d.metadata.name
                    for d in found
                    if not d.metadata.deletion_timestamp and (d.spec.replicas or 0) > 0
                )
            )
        obj = self.mds.get(name) or {}
        status = obj.get("status") or {}
        paused: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c["type"] == "Paused"), {}
        )
        sample = Sample(
            t=time.monotonic(),
            generation=int(obj.get("metadata", {}).get("generation", 0)),
            observed_generation=status.get("observedGeneration"),
            phase=status.get("phase"),
            stable=status.get("stableRevision"),
            canary=at(status, "rollout.canary.revision"),
            step=at(status, "rollout.canary.step"),
            weight=at(status, "rollout.canary.weight"),
            aborted=at(status, "rollout.aborted.reason"),
            route=route,
            canary_service=selector.get("modelship.io/revision"),
            paused_reason=paused.get("reason") if paused.get("status") == "True" else None,
            deployments=live,
            errors=self.loads[name].summary().errors if name in self.loads else 0,
        )
        return sample, obj.get("metadata", {}).get("resourceVersion")

    def events(self, name: str) -> list[dict[str, Any]]:
        uid = (self.mds.get(name) or {})["metadata"]["uid"]
        found: Any = self.custom.list_namespaced_custom_object(
            "events.k8s.io", "v1", self.namespace, "events", field_selector=f"regarding.uid={uid}"
        )
        return list(found["items"])

    def until(
        self, what: str, name: str, done: Callable[[dict[str, Any]], bool], timeout: float = 120
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            try:
                status = self.status(name)
            except Exception:  # the API server may be the fault; ask again
                return None
            return status if done(status) else None

        found: dict[str, Any] = wait_for(f"{self.namespace}/{name}: {what}", probe, timeout)
        return found

    def promoted(self, name: str, target: str, timeout: float = 120) -> dict[str, Any]:
        return self.until(
            f"{target} promoted and Healthy",
            name,
            lambda s: (
                s.get("phase") == "Healthy" and s.get("stableRevision") == target and not s.get("rollout")
            ),
            timeout,
        )

    def figures(
        self,
        scenario: str,
        name: str,
        target: str,
        steps: list[dict[str, Any]],
        recorder: Recorder,
        started: float,
        ended: float,
        faults: int,
        reached: int | None = None,
        end: str = "Promoted",
    ) -> Figures:
        # The end state once nothing is left to do (the previous stable revision scaled down), and
        # the Events of the last pass posted: a pass writes the status before it posts them.
        status = self.until(
            "the previous stable revision scaled down", name, lambda s: not s.get("scaleDownRevision"), 30
        )
        time.sleep(1)
        events = rollout_events(self.events(name), target)
        regressions = weight_regressions(recorder.samples)
        short = pauses_cut_short(recorder.samples, steps, name)
        repeated, skipped, missing = step_figures(events, steps, reached, end)
        summary = self.loads[name].summary() if name in self.loads else None
        return Figures(
            scenario=scenario,
            faults=faults,
            steps_repeated=repeated,
            steps_skipped=skipped,
            weight_regressions=len(regressions),
            failed_requests=summary.errors - recorder.errors_before if summary else 0,
            requests=summary.requests if summary else 0,
            events_missing=missing,
            pauses_cut_short=len(short),
            seconds=round(ended - started, 1),
            outcome=f"{status.get('phase')}, stable {status.get('stableRevision')}",
            notes={
                "final": normalized_final(status, self.route(name), name),
                "regressions": regressions,
                "pauses_cut_short": short,
                "failed_before_rollout": recorder.errors_before,
                "failures_at": failures_at(recorder.samples),
                # What the failed answers were (a status code, or the client's error: a timeout).
                "failure_codes": {str(c): n for c, n in summary.codes.items() if c != 200} if summary else {},
                # Which of them the gateway answered itself, and on which route and service.
                "gateway_errors": self.world.gateway_errors(self.namespace)[:20],
                "events": [f"{e['reason']}: {e['note'][:48]}" for e in events],
            },
        )


def container_pids(pod: Any) -> list[int]:
    """The host pids of a pod's containers (not its sandbox), from /proc/<pid>/cgroup."""
    ids = [s.container_id.split("://")[-1] for s in pod.status.container_statuses or [] if s.container_id]
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cgroups = (proc / "cgroup").read_text()
            if any(f"/{cid}" in cgroups for cid in ids):
                found.append(int(proc.name))
    return found


def kill_container(pod: Any) -> int:
    """SIGKILL a pod's container processes on the node (the kubelet restarts them); how many."""
    pids = container_pids(pod)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return len(pids)
