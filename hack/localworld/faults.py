"""The fault suite (issue #18): canaries in the local world with one kind of fault injected each,
and the figures that say whether the rollout or its users noticed. One implementation for the
e2e tests (tests/e2e/test_faults.py asserts on the figures) and `make bench-faults`
(bench/faults.py writes them to bench/results/faults.json).

Each scenario runs in a namespace of its own with an operator process of its own (a SIGKILL of
one operator touches no other scenario), serving pods on the real node, background load through
Traefik from the load generator, and a recorder that samples the ModelDeployment's status, its
HTTPRoute and its Services every 0.25 s. The figures of a scenario:

- `faults`: faults injected (operator kills, component restarts, pod kills, spec flips);
- `steps_repeated`, `steps_skipped`: per canary step (and the promotion), from the transition
  Events of the rollout that ended it: each step posts its Event (`WeightChanged`,
  `PauseStarted`, `AnalysisSuccessful`, `Promoted`) exactly once when it is taken once;
- `weight_regressions`: times a canary's weight went down while its rollout went on (status, or
  the route's weight for the Service that selects it);
- `failed_requests`: the load generator's answers that were not 2xx (outside the fault's own
  window for a fault that takes the gateway itself down: `failed_during_fault` counts those);
- `events_missing`: transition Events the rollout should have posted and did not;
- `seconds` from the spec change to the end, against `baseline_seconds`, the same canary with
  no fault.

Scenarios that do not disturb each other run side by side (`Suite.run`): the ones that take down
a shared part (the API server, etcd, Traefik, Prometheus) run while no other scenario would
notice it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from devcluster.cluster import LocalCluster, wait_for
from loadgen import Load
from loadgen.mix import holdout_samples
from localworld import crashpoint, demomodels
from localworld.podmetrics import served_by_revision
from localworld.rollouts import ModelDeployments, OperatorProcess, at, model_deployment, revision
from localworld.world import Endpoint, LocalWorld, pin_namespace
from modelship import api, plugin

SCRAPE = "2s"  # the world's scrape interval (the e2e fixture's too)
RATE = 10.0  # requests per second through Traefik, per ModelDeployment
ANALYSIS_RATE = 20.0  # enough for minRequests within an interval at the canary's 50%
INTERVAL_SECONDS = 5
STEPS4: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {"duration": "3s"}},
]
STEPS8: list[dict[str, Any]] = [
    step for weight in (10, 25, 50, 75) for step in ({"setWeight": weight}, {"pause": {"duration": "3s"}})
]
ANALYSIS_STEPS: list[dict[str, Any]] = [
    {"setWeight": 50},
    {"analysis": {}},
    {"setWeight": 80},
    {"pause": {"duration": "2s"}},
]
# Measure every 5 s (the world scrapes every 2 s); a step passes after 2 good rounds.
ANALYSIS = demomodels.analysis(
    f"{INTERVAL_SECONDS}s", count=2, window="20s", minRequests=5, inconclusiveLimit=20
)
HELD: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]  # the targeted kills' canary
UNREACHABLE_TIMEOUT = "30s"  # the 10x outage's second ModelDeployment rolls back past it
NEVER_READY = "127.0.0.1:9/modelship-faults/never-ready@sha256:" + "0" * 64  # refused on loopback
STEP_REASONS = {"setWeight": "WeightChanged", "pause": "PauseStarted", "analysis": "AnalysisSuccessful"}


# ---- figures ----------------------------------------------------------------------------------


@dataclass
class Figures:
    scenario: str
    faults: int = 0
    steps_repeated: int = 0
    steps_skipped: int = 0
    weight_regressions: int = 0
    failed_requests: int = 0
    failed_during_fault: int = 0
    requests: int = 0
    events_missing: int = 0
    pauses_cut_short: int = 0  # timed pauses held for less than their duration at their weight
    seconds: float = 0.0
    baseline_seconds: float | None = None
    outcome: str = ""
    final_matches_baseline: bool | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        base = f"{self.baseline_seconds:.1f}s" if self.baseline_seconds is not None else "n/a"
        return (
            f"{self.scenario}: {self.faults} faults; steps repeated {self.steps_repeated}, skipped "
            f"{self.steps_skipped}; weight regressions {self.weight_regressions}; failed requests "
            f"{self.failed_requests} of {self.requests} (during the fault: {self.failed_during_fault}); "
            f"Events missing {self.events_missing}; pauses cut short {self.pauses_cut_short}; "
            f"{self.seconds:.1f}s (no faults: {base}); "
            f"{self.outcome}; {self.notes}"
        )


@dataclass(frozen=True)
class Sample:
    t: float  # monotonic
    generation: int
    observed_generation: int | None
    phase: str | None
    stable: str | None
    canary: str | None  # status.rollout.canary.revision
    step: int | None
    weight: int | None  # status.rollout.canary.weight
    aborted: str | None  # status.rollout.aborted.reason
    route: dict[str, int]  # backend Service -> weight
    canary_service: str | None  # the revision `<name>-canary` selects
    paused_reason: str | None
    deployments: tuple[str, ...] = ()  # live revision Deployments with replicas > 0
    errors: int = 0  # the load generator's failed requests so far


def expected_events(
    steps: list[dict[str, Any]], reached: int | None = None, end: str = "Promoted"
) -> Counter[str]:
    """The transition Events of one rollout of `steps` that took the first `reached` steps (all by
    default) and ended with `end` (Promoted, or an abort's reason)."""
    taken = steps if reached is None else steps[:reached]
    found: Counter[str] = Counter({"RolloutStarted": 1, end: 1})
    for step in taken:
        found.update(STEP_REASONS[k] for k in step if k in STEP_REASONS)
    return found


def rollout_events(events: list[dict[str, Any]], canary: str) -> list[dict[str, Any]]:
    """The transition Events (in order) from the last `RolloutStarted` of revision `canary` on.
    The Events of one pass share its time (whole seconds), so the rollout's are those at or after
    its start's time; the previous canary's `CanaryReplaced`, posted by the same pass, is left out."""

    def when(e: dict[str, Any]) -> str:
        return str(e.get("eventTime") or e["metadata"]["creationTimestamp"])

    transitions = [e for e in events if e.get("reason") != "AnalysisMeasured" and not e.get("series")]
    starts = [when(e) for e in transitions if e["reason"] == "RolloutStarted" and canary in e.get("note", "")]
    if not starts:
        return []
    first = max(starts)
    found = [e for e in transitions if when(e) >= first and e["reason"] != "CanaryReplaced"]
    # RolloutStarted first among the Events of its own pass.
    return sorted(found, key=lambda e: (when(e), e["reason"] != "RolloutStarted"))


def step_figures(
    events: list[dict[str, Any]],
    steps: list[dict[str, Any]],
    reached: int | None = None,
    end: str = "Promoted",
) -> tuple[int, int, int]:
    """(repeated, skipped, missing) for one rollout's Events: each step taken (and the end) once,
    by the step's label (`step i/n`) where its Event has one, by count otherwise."""
    taken = steps if reached is None else steps[:reached]
    n = len(steps)
    repeated = skipped = 0
    reasons = Counter(e["reason"] for e in events)
    for i, step in enumerate(taken):
        kind = next(k for k in step if k in ("setWeight", "pause", "analysis", "setCanaryScale"))
        if kind in ("setWeight", "pause"):
            label = f"step {i + 1}/{n}:"
            count = sum(
                1 for e in events if e["reason"] == STEP_REASONS[kind] and e["note"].startswith(label)
            )
            repeated += max(0, count - 1)
            skipped += count == 0
    analyses = sum(1 for s in taken if "analysis" in s)
    repeated += max(0, reasons["AnalysisSuccessful"] - analyses) + max(0, reasons[end] - 1)
    skipped += max(0, analyses - reasons["AnalysisSuccessful"]) + (reasons[end] == 0)
    expected = expected_events(steps, reached, end)
    missing = sum(max(0, count - reasons[reason]) for reason, count in expected.items())
    return repeated, skipped, missing


def pauses_cut_short(samples: list[Sample], steps: list[dict[str, Any]], name: str) -> list[str]:
    """Each timed pause that held for less than its duration at its weight, said: from the first
    sample whose route gives `<name>-canary` the weight of the step before the pause (while it
    selects the revision rolled out) to the first whose status has the pause done. The samples are
    0.25 s apart, so up to that much short is sampling, not a cut."""
    short = []
    for i, step in enumerate(steps):
        pause, before = step.get("pause") or {}, steps[i - 1] if i else {}
        if not pause.get("duration") or "setWeight" not in before:
            continue
        wanted, weight = api.parse_duration(pause["duration"]).total_seconds(), before["setWeight"]
        index = next(
            (
                k
                for k, s in enumerate(samples)
                if s.route.get(f"{name}-canary") == weight and s.canary_service == s.canary
            ),
            None,
        )
        # Not judged across a gap in the samples (the API server down): the weight may have been
        # there long before the first sample that shows it.
        if index is None or (index > 0 and samples[index].t - samples[index - 1].t > 1.0):
            continue
        on = samples[index].t
        done = next((s.t for s in samples if s.step is not None and s.step > i), None)
        if done is not None and done - on < wanted - 0.25:
            short.append(f"step {i + 1} (pause {pause['duration']}) held {done - on:.2f}s at weight {weight}")
    return short


def weight_regressions(samples: list[Sample]) -> list[str]:
    """Each time a canary's weight went down while its own rollout went on, said: in the status
    (same canary revision, not aborted), and in the route (the weight of `<name>-canary` while it
    selects the revision the status still rolls out). A new revision mid-rollout, an abort or a
    rollback take weight away by design; they are not counted."""
    found = []
    t0 = samples[0].t if samples else 0.0
    for a, b in itertools.pairwise(samples):
        going_on = b.aborted is None and b.canary is not None
        when = f"at {b.t - t0:.1f}s"
        if going_on and a.canary == b.canary and (a.weight or 0) > (b.weight or 0):
            found.append(f"{when}: status weight of {b.canary} {a.weight} -> {b.weight}")
        canary_a, canary_b = _canary_weight(a), _canary_weight(b)
        same = a.canary_service == b.canary_service == b.canary
        if going_on and same and canary_a is not None and canary_b is not None and canary_a > canary_b:
            found.append(
                f"{when}: route weight of the canary Service ({b.canary_service}) {canary_a} -> {canary_b}; "
                f"status weight {a.weight} -> {b.weight}"
            )
    return found


def failures_at(samples: list[Sample]) -> list[str]:
    """When the load generator's failures happened, with what the rollout looked like then."""
    t0 = samples[0].t if samples else 0.0
    return [
        f"+{b.errors - a.errors} at {b.t - t0:.1f}s: {b.phase}, canary {b.canary} step {b.step} weight "
        f"{b.weight}, route {b.route}, canary Service -> {b.canary_service}"
        for a, b in itertools.pairwise(samples)
        if b.errors > a.errors
    ]


def _canary_weight(sample: Sample) -> int | None:
    found = [w for backend, w in sample.route.items() if backend.endswith("-canary")]
    return found[0] if found else None


def normalized_final(status: dict[str, Any], route: dict[str, int], name: str) -> dict[str, Any]:
    """What must be the same at the end of any run of one canary, whatever happened on the way."""
    return {
        "phase": status.get("phase"),
        "rollout": status.get("rollout"),
        "conditions": sorted((c["type"], c["status"], c["reason"]) for c in status.get("conditions") or []),
        "route": {backend.removeprefix(name): weight for backend, weight in route.items()},
    }


# ---- one scenario's namespace -------------------------------------------------------------------


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
        """One consistent sample: read again when a pass wrote the status meanwhile (a status read
        before a pass and a route read after it would look like a weight that went back)."""
        for _ in range(3):
            taken = self._sample(name, deployments)
            again = (self.mds.get(name) or {}).get("metadata", {}).get("resourceVersion")
            if again == taken[1]:
                break
        return taken[0]

    def _sample(self, name: str, deployments: bool) -> tuple[Sample, str | None]:
        obj = self.mds.get(name) or {}
        status = obj.get("status") or {}
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
        paused: dict[str, Any] = next(
            (c for c in status.get("conditions") or [] if c["type"] == "Paused"), {}
        )
        route = self.route(name)
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
                "events": [f"{e['reason']}: {e['note'][:48]}" for e in events],
            },
        )


# ---- faults -------------------------------------------------------------------------------------


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


# ---- scenarios ----------------------------------------------------------------------------------


def run_plain(
    bed: Bed, scenario: str, steps: list[dict[str, Any]], analysis: dict[str, Any] | None = None
) -> Figures:
    """A canary from v1 to v2 with no fault: the baseline the others are timed against."""
    name = "m"
    bed.deploy(name, steps, analysis)
    bed.load(name, ANALYSIS_RATE if analysis else RATE)
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, "v2")
        bed.promoted(name, target)
        ended = time.monotonic()
    return bed.figures(scenario, name, target, steps, recorder, started, ended, faults=0)


def run_random_kills(bed: Bed, seed: int, kills: int = 6) -> Figures:
    """SIGKILL the operator at random moments of an 8-step canary, at least `kills` times; start it
    again after a random moment down. A moment is drawn from when the operator answers its
    liveness probe: one drawn from its start would often fall in its start-up (seconds on a busy
    machine), where it has done nothing yet, and the rollout would never move."""
    rng = random.Random(seed)
    name = "m"
    bed.deploy(name, STEPS8)
    bed.load(name)
    wait_for("the operator to answer its liveness probe", bed.operator.health, timeout=60)
    done = 0
    moments: list[float] = []
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, "v2")
        deadline = started + 240
        while time.monotonic() < deadline:
            time.sleep(rng.uniform(0.3, 3.0))
            status = bed.status(name)
            if done >= kills and status.get("stableRevision") == target:
                break
            if status.get("stableRevision") == target and not status.get("rollout"):
                break  # promoted before enough kills: the figures say how many there were
            bed.operator.stop(sig=signal.SIGKILL)
            moments.append(round(time.monotonic() - started, 2))
            done += 1
            time.sleep(rng.uniform(0.0, 1.0))
            bed.operator.start()
            wait_for("the operator to answer its liveness probe", bed.operator.health, timeout=60)
        bed.promoted(name, target)
        ended = time.monotonic()
    figures = bed.figures("operator-sigkill-random", name, target, STEPS8, recorder, started, ended, done)
    figures.notes.update(seed=seed, kill_moments_s=moments)
    return figures


def run_kill_each_write(bed: Bed, limit: int = 16) -> Figures:
    """The empty-canary test: a canary held at 50%, then a new digest, and the operator killed
    after write k of the pass that handles it, for k = 1, 2, ... until that pass completes with
    fewer writes. The images alternate between v2 and v3-inaccurate (no analysis here: only the
    writes' order is on trial), each canary reaching 50% again before the next change."""
    name = "m"
    bed.deploy(name, HELD)
    bed.load(name)
    images = ("v2", "v3-inaccurate")
    crashes: list[dict[str, Any]] = []
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, images[0])
        at_half(bed, name, target)
        k, completed = 0, None
        while completed is None and k < limit:
            k += 1
            generation = int((bed.mds.get(name) or {})["metadata"]["generation"]) + 1
            crashpoint.arm(bed.arm_file, bed.namespace, name, generation, k)
            _, target = bed.roll(name, images[k % 2])
            result = wait_for(
                f"the pass after write {k}", lambda: crashpoint.outcome(bed.arm_file), timeout=60
            )
            errors = bed.loads[name].summary().errors
            if result["crashed"]:
                wait_for(
                    "the operator to exit", lambda: not (bed.operator.child and bed.operator.child.running)
                )
                bed.operator.start()
                crashes.append({"after_write": k, "write": result["log"][-1]})
            else:
                completed = result
            at_half(bed, name, target)
            failed = bed.loads[name].summary().errors - errors
            if failed:  # the requests that failed around this change, and when
                crashes.append(
                    {
                        "after_write": k,
                        "failed_requests": failed,
                        "at_s": round(time.monotonic() - started, 1),
                    }
                )
        # The end, as a person's `kubectl modelship promote` makes it.
        plugin.run_verb(bed.mds.kube, bed.namespace, name, "promote")
        bed.promoted(name, target)
        ended = time.monotonic()
    kills = sum(1 for c in crashes if "write" in c)  # the others say when requests failed
    figures = bed.figures("operator-sigkill-each-write", name, target, HELD, recorder, started, ended, kills)
    # Every rollout of the scenario (one per image change) counts, not only the last one: each
    # must have posted its start, its weight, its pause and, but the last, its replacement.
    rollouts = k + 1
    wanted = Counter(
        RolloutStarted=rollouts, WeightChanged=rollouts, PauseStarted=rollouts, CanaryReplaced=k, Promoted=1
    )
    got = Counter(e["reason"] for e in bed.events(name) if e["reason"] in wanted)
    taken = ("WeightChanged", "PauseStarted", "Promoted")
    figures.steps_repeated = sum(max(0, got[r] - wanted[r]) for r in taken)
    figures.steps_skipped = sum(max(0, wanted[r] - got[r]) for r in taken)
    figures.events_missing = sum(max(0, wanted[r] - got[r]) for r in wanted)
    figures.notes.update(
        events_wanted=dict(wanted),
        events_posted=dict(got),
        pass_writes=(completed or {}).get("writes"),
        pass_log=(completed or {}).get("log"),
        crashes=crashes,
        covered_every_write=completed is not None,
    )
    return figures


def at_half(bed: Bed, name: str, target: str) -> None:
    def held(s: dict[str, Any]) -> bool:
        return (
            at(s, "rollout.canary.revision") == target
            and at(s, "rollout.canary.weight") == 50
            and (at(s, "rollout.canary.step") or 0) >= 1
        )

    bed.until(f"{target} at 50%", name, held, timeout=90)


def run_flips(bed: Bed) -> Figures:
    """Three digests within a second: v3-slow, v3-inaccurate, then v2, which must be rolled out
    alone."""
    name = "m"
    bed.deploy(name, STEPS4)
    bed.load(name)
    with Recorder(bed, name, deployments=True) as recorder:
        # The three changes made beforehand and sent back to back: on a busy machine, working out
        # each between the patches took longer than the second the scenario is about.
        changes = [bed.image_spec(name, image) for image in ("v3-slow", "v3-inaccurate", "v2")]
        started = time.monotonic()
        for change in changes:
            last = bed.mds.patch(name, change)
        flipped = time.monotonic() - started
        generation, target = int(last["metadata"]["generation"]), revision(last)
        bed.promoted(name, target)
        ended = time.monotonic()
        # The previous stable revision scales down after scaleDownDelay (5s).
        wait_for(
            "v1 scaled down", lambda: len(bed.sample(name, deployments=True).deployments) == 1, timeout=30
        )
        time.sleep(0.5)
    figures = bed.figures("spec-flips", name, target, STEPS4, recorder, started, ended, faults=3)
    seen = [s for s in recorder.samples if (s.observed_generation or 0) >= generation]
    figures.notes.update(
        flipped_within_s=round(flipped, 2),
        canaries_after_last_flip=sorted({s.canary for s in seen if s.canary}),
        route_sums=sorted({sum(s.route.values()) for s in recorder.samples}),
        most_canary_deployments=max(
            (len([d for d in s.deployments if d not in (s.stable, s.canary)]) for s in seen), default=0
        ),
        deployments_at_end=list(bed.sample(name, deployments=True).deployments),
    )
    return figures


def run_never_ready(bed: Bed) -> Figures:
    """An image that can never be pulled (its registry, on loopback, refuses): aborted at
    spec.progressDeadline (15s here), stable untouched, no user request failed."""
    name = "m"
    stable = bed.deploy(name, STEPS4, progressDeadline="15s")
    bed.load(name)
    pods = {p.metadata.uid: p for p in bed.pods()}
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, NEVER_READY)
        status = bed.until(
            "the canary aborted", name, lambda s: at(s, "rollout.aborted.revision") == target, timeout=120
        )
        ended = time.monotonic()
        time.sleep(1)
    after = {p.metadata.uid: p for p in bed.pods()}
    stable_pods = [p for p in after.values() if p.metadata.labels.get("modelship.io/revision") == stable]
    figures = bed.figures(
        "never-ready-image",
        name,
        target,
        STEPS4,
        recorder,
        started,
        ended,
        1,
        reached=0,
        end="ProgressDeadlineExceeded",
    )
    figures.notes.update(
        aborted=status["rollout"]["aborted"]["reason"],
        stable_after=status.get("stableRevision") == stable,
        stable_pods_untouched=all(
            p.metadata.uid in pods
            and not any((c.restart_count or 0) for c in p.status.container_statuses or [])
            for p in stable_pods
        )
        and bool(stable_pods),
        most_canary_weight=max((_canary_weight(s) or 0 for s in recorder.samples), default=0),
        progress_deadline="15s",
    )
    return figures


def run_pod_kill(bed: Bed) -> Figures:
    """The stable revision's pod killed (SIGKILL of its container; the kubelet restarts it) while
    the canary's analysis step measures: the canary must still pass, not charged with the
    stable pod's errors."""
    name = "m"
    stable = bed.deploy(name, ANALYSIS_STEPS, ANALYSIS)
    load = bed.load(name, ANALYSIS_RATE)
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, "v2")
        analysing(bed, name)
        pod = next(p for p in bed.pods() if p.metadata.labels.get("modelship.io/revision") == stable)
        before = load.summary().errors
        killed = kill_container(pod)
        wait_for(
            "the kubelet to restart the stable pod",
            lambda: _restarted_and_ready(bed.core, bed.namespace, pod.metadata.name),
            timeout=60,
        )
        # The gateway learns of the pod's return from its EndpointSlices a moment later: the
        # restart's errors are those until then.
        time.sleep(2)
        during = load.summary().errors - before
        status = bed.promoted(name, target)
        ended = time.monotonic()
    figures = bed.figures("serving-pod-killed", name, target, ANALYSIS_STEPS, recorder, started, ended, 1)
    figures.failed_during_fault, figures.failed_requests = during, figures.failed_requests - during
    figures.notes.update(
        processes_killed=killed,
        analysis=[(r.get("kind"), r.get("phase")) for r in status.get("analysis") or []],
        canary_errors_seen_by_prometheus=canary_errors(bed, target),
    )
    return figures


def _restarted_and_ready(core: client.CoreV1Api, namespace: str, pod: str) -> bool:
    found: Any = core.read_namespaced_pod(pod, namespace)
    statuses = found.status.container_statuses or []
    return any((s.restart_count or 0) >= 1 for s in statuses) and all(s.ready for s in statuses)


def canary_errors(bed: Bed, target: str) -> float:
    query = (
        f'sum(max_over_time(modelserver_requests_total{{namespace="{bed.namespace}", revision="{target}", '
        f'code=~"5.."}}[10m]))'
    )
    return sum(float(s["value"][1]) for s in bed.world.prometheus.query(query))


def analysing(bed: Bed, name: str) -> None:
    bed.until(
        "the analysis step to run",
        name,
        lambda s: any(r.get("phase") == "Running" for r in s.get("analysis") or []),
        timeout=90,
    )


def run_component_restarts(bed: Bed, world: LocalWorld) -> Figures:
    """kube-apiserver, then etcd, each SIGKILLed mid-rollout and started again 4 s later: the
    operator (the same process) carries on by itself."""
    name = "m"
    bed.deploy(name, STEPS8)
    bed.load(name)
    pid = bed.operator.child.pid if bed.operator.child else None
    downs: dict[str, float] = {}
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, "v2")
        for component, step in (("kube-apiserver", 1), ("etcd", 5)):
            bed.until(f"step {step}", name, reached(step), timeout=90)
            down = time.monotonic()
            world.stop_component(component, sig=signal.SIGKILL)
            time.sleep(4)
            world.start_component(component)
            downs[component] = round(time.monotonic() - down, 1)
        bed.promoted(name, target)
        ended = time.monotonic()
    figures = bed.figures("kube-apiserver-and-etcd-killed", name, target, STEPS8, recorder, started, ended, 2)
    figures.notes.update(
        down_s=downs,
        operator_same_process=bool(
            bed.operator.child and bed.operator.child.running and bed.operator.child.pid == pid
        ),
    )
    return figures


def run_gateway_restart(bed: Bed, world: LocalWorld) -> Figures:
    """Traefik stopped while the canary pauses at 20% and started 4 s later, across the move to
    50%: weights are in effect again after the restart, and no weight step completes while the
    gateway cannot apply them. (A timed pause runs on: a stopped gateway leaves the route's status
    as it was, and the weights it verified stay the route's.)"""
    name = "m"
    steps: list[dict[str, Any]] = [
        {"setWeight": 20},
        {"pause": {"duration": "3s"}},
        {"setWeight": 50},
        {"pause": {"duration": "8s"}},
    ]
    bed.deploy(name, steps)
    load = bed.load(name)
    with Recorder(bed, name) as recorder:
        started = time.monotonic()
        _, target = bed.roll(name, "v2")
        bed.until("step 1", name, reached(1), timeout=90)
        before = load.summary().errors
        down = time.monotonic()
        world.stop_component("traefik")
        time.sleep(4)
        # Certainly down until here: once started, Traefik may accept the route before
        # start_component has seen it healthy, and a step done then is done on applied weights.
        back = time.monotonic()
        world.start_component("traefik")
        endpoint = bed.endpoints[name]
        wait_for("Traefik to route again", endpoint.answers, timeout=30)
        up = time.monotonic()
        during = load.summary().errors - before
        served_up = served_by_revision(bed.core, bed.namespace)
        status = bed.status(name)
        weight_up = at(status, "rollout.canary.weight")
        bed.promoted(name, target)
        ended = time.monotonic()
    served_end = served_by_revision(bed.core, bed.namespace)
    figures = bed.figures("gateway-restarted", name, target, steps, recorder, started, ended, 1)
    figures.failed_during_fault, figures.failed_requests = during, figures.failed_requests - during
    share = _share(served_up, served_end, target)
    figures.notes.update(
        down_s=round(up - down, 1),
        weight_steps_completed_while_down=_completed_between(
            recorder.samples, steps, "setWeight", down, back
        ),
        weight_when_back=weight_up,
        canary_share_after_restart=share,
    )
    return figures


def _completed_between(
    samples: list[Sample], steps: list[dict[str, Any]], kind: str, start: float, end: float
) -> int:
    """How many steps of `kind` (setWeight) were written to the route after `start` and shown done
    by the status before `end`: a weight the gateway took before it stopped is applied, whenever
    the status says so."""
    done = 0
    for i, step in enumerate(steps):
        if kind in step:
            shown = (s.t for s in samples if _canary_weight(s) == step[kind] and s.canary_service == s.canary)
            written = next(shown, None)
            first = next((s.t for s in samples if s.step is not None and s.step > i), None)
            done += written is not None and first is not None and start <= written and first < end
    return done


def reached(step: int) -> Callable[[dict[str, Any]], bool]:
    """A status test: the canary's step index is `step` or beyond."""
    return lambda status: (at(status, "rollout.canary.step") or 0) >= step


def _share(before: Counter[str], after: Counter[str], revision_name: str) -> float | None:
    delta = after - before
    total = sum(delta.values())
    return round(delta[revision_name] / total, 3) if total else None


def run_prometheus_outage(bed: Bed, world: LocalWorld, intervals: int) -> list[Figures]:
    """Prometheus down for `intervals` analysis intervals while the canary's analysis step
    measures. ModelDeployment `m` (default unreachableTimeout, 10m) must hold, promote nothing
    while it is down, and go on by itself once it answers; with 10 intervals, `t` (unreachableTimeout
    30s) must roll back to stable past its timeout."""
    names = {"m": ANALYSIS}
    if intervals * INTERVAL_SECONDS > 30:
        names["t"] = {**ANALYSIS, "unreachableTimeout": UNREACHABLE_TIMEOUT}
    stables = {n: bed.deploy(n, ANALYSIS_STEPS, a) for n, a in names.items()}
    for n in names:
        bed.load(n, ANALYSIS_RATE)
    recorders = {n: Recorder(bed, n) for n in names}
    with contextlib.ExitStack() as stack:
        for r in recorders.values():
            stack.enter_context(r)
        started = time.monotonic()
        targets = {n: bed.roll(n, "v2")[1] for n in names}
        for n in names:
            analysing(bed, n)
        down = time.monotonic()
        world.stop_component("prometheus")
        try:
            time.sleep(intervals * INTERVAL_SECONDS)
        finally:
            world.start_component("prometheus")
        up = time.monotonic()
        results = {}
        results["m"] = bed.promoted("m", targets["m"], timeout=120)
        ends = {"m": time.monotonic()}
        if "t" in names:
            results["t"] = bed.until(
                "rolled back", "t", lambda s: at(s, "rollout.aborted.revision") == targets["t"], timeout=60
            )
            ends["t"] = time.monotonic()
    out = []
    for n in names:
        window = recorders[n].during(down, up)
        steps = [s.step for s in window if s.step is not None and s.canary == targets[n]]
        rolled_back = n == "t"
        scenario = f"prometheus-down-{intervals}x" + ("-past-unreachable-timeout" if rolled_back else "")
        figures = bed.figures(
            scenario,
            n,
            targets[n],
            ANALYSIS_STEPS,
            recorders[n],
            started,
            ends[n],
            1,
            reached=1 if rolled_back else None,
            end="PrometheusUnreachable" if rolled_back else "Promoted",
        )
        figures.notes.update(
            down_s=round(up - down, 1),
            promoted_while_down=any(s.stable != stables[n] for s in window),
            paused_reasons_while_down=sorted({s.paused_reason for s in window if s.paused_reason}),
            steps_taken_while_down=max(steps, default=0) - min(steps, default=0),
            unreachable_timeout=UNREACHABLE_TIMEOUT if rolled_back else "10m (default)",
        )
        if rolled_back:
            condition = next(c for c in results[n].get("conditions", []) if c["type"] == "Progressing")
            figures.notes.update(
                rolled_back_reason=condition["reason"],
                rolled_back_after_s=next(
                    (round(s.t - down, 1) for s in recorders[n].samples if s.aborted and s.t >= down), None
                ),
                most_canary_weight_after_rollback=_canary_weight(bed.sample(n)),
            )
        out.append(figures)
    return out


# ---- the suite ----------------------------------------------------------------------------------

BASELINES = {"steps4": STEPS4, "steps8": STEPS8, "analysis": ANALYSIS_STEPS}
SHAPE = {
    "operator-sigkill-random": "steps8",
    "operator-sigkill-each-write": None,
    "spec-flips": "steps4",
    "never-ready-image": None,
    "serving-pod-killed": "analysis",
    "kube-apiserver-and-etcd-killed": "steps8",
    "gateway-restarted": "steps4",
    "prometheus-down-3x": "analysis",
    "prometheus-down-10x": "analysis",
    "prometheus-down-10x-past-unreachable-timeout": None,
}
SCENARIOS = tuple(SHAPE)


class Suite:
    """Every scenario, in three lanes: the ones that disturb nothing shared side by side, with the
    Prometheus outages (which only analysis notices) running next to them followed by the
    analysis canaries; then, alone, the API server, etcd and Traefik restarts. `figures[name]`
    is a Future of each scenario's figures (and of each baseline's, `baseline-<shape>`)."""

    def __init__(
        self, world: LocalWorld, api: client.ApiClient, cluster: LocalCluster, logs: Path, seed: int
    ) -> None:
        self.world, self.api, self.cluster, self.logs, self.seed = world, api, cluster, logs, seed
        logs.mkdir(parents=True, exist_ok=True)
        self.figures: dict[str, Future[Figures]] = {
            n: Future() for n in (*SCENARIOS, *(f"baseline-{s}" for s in BASELINES))
        }
        self._thread: threading.Thread | None = None

    def bed(self, scenario: str) -> Bed:
        return Bed(self.world, self.api, self.cluster, scenario, self.logs)

    def start(self) -> Suite:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def result(self, name: str, timeout: float = 900) -> Figures:
        figures = self.figures[name].result(timeout)
        shape = SHAPE.get(name)
        if shape is not None:
            figures.baseline_seconds = self.figures[f"baseline-{shape}"].result(timeout).seconds
        if figures.outcome.startswith("Healthy"):  # promoted: it ends as a run with no fault ends
            baseline = self.figures["baseline-steps4"].result(timeout)
            figures.final_matches_baseline = figures.notes["final"] == baseline.notes["final"]
        return figures

    def run(self) -> None:
        def one(name: str, body: Callable[[Bed], Figures | list[Figures]]) -> None:
            try:
                with self.bed(name.removeprefix("baseline-")[:20]) as bed:
                    found = body(bed)
                for f in found if isinstance(found, list) else [found]:
                    self.figures[f.scenario if f.scenario in self.figures else name].set_result(f)
            except BaseException as e:
                for key in [name, *(k for k in self.figures if k.startswith(name))]:
                    if not self.figures[key].done():
                        self.figures[key].set_exception(e)

        def analysis_lane() -> None:
            one("prometheus-down-3x", lambda b: run_prometheus_outage(b, self.world, 3))
            one("prometheus-down-10x", lambda b: run_prometheus_outage(b, self.world, 10))
            with ThreadPoolExecutor(2) as pool:
                pool.submit(one, "baseline-analysis", lambda b: _baseline(b, "analysis"))
                pool.submit(one, "serving-pod-killed", run_pod_kill)

        with ThreadPoolExecutor(8) as pool:
            pool.submit(analysis_lane)
            pool.submit(one, "baseline-steps4", lambda b: _baseline(b, "steps4"))
            pool.submit(one, "baseline-steps8", lambda b: _baseline(b, "steps8"))
            pool.submit(one, "operator-sigkill-random", lambda b: run_random_kills(b, self.seed))
            pool.submit(one, "operator-sigkill-each-write", run_kill_each_write)
            pool.submit(one, "spec-flips", run_flips)
            pool.submit(one, "never-ready-image", run_never_ready)
        # Alone: everyone would notice these.
        one("kube-apiserver-and-etcd-killed", lambda b: run_component_restarts(b, self.world))
        one("gateway-restarted", lambda b: run_gateway_restart(b, self.world))
        for name, future in self.figures.items():
            if not future.done():
                future.set_exception(RuntimeError(f"scenario {name} gave no figures"))


def _baseline(bed: Bed, shape: str) -> Figures:
    analysis = ANALYSIS if shape == "analysis" else None
    return run_plain(bed, f"baseline-{shape}", BASELINES[shape], analysis)


@contextlib.contextmanager
def suite(
    world: LocalWorld, api: client.ApiClient, cluster: LocalCluster, logs: Path, seed: int | None = None
) -> Iterator[Suite]:
    chosen = seed if seed is not None else random.SystemRandom().randrange(1 << 30)
    running = Suite(world, api, cluster, logs, chosen).start()
    try:
        yield running
    finally:
        # Scenarios still running (a test gave up waiting) end at their own timeouts.
        if running._thread is not None:
            running._thread.join(300)
