"""Every scenario, run in lanes so that none notices another's fault (`Suite`, `suite`)."""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from kubernetes import client

from devcluster.cluster import LocalCluster
from localworld.faults.bed import Bed
from localworld.faults.canaries import ANALYSIS, ANALYSIS_STEPS, STEPS4, STEPS8
from localworld.faults.components import (
    run_component_restarts,
    run_gateway_restart,
    run_pod_kill,
    run_prometheus_outage,
)
from localworld.faults.figures import Figures
from localworld.faults.operator import (
    run_flips,
    run_kill_each_write,
    run_never_ready,
    run_plain,
    run_random_kills,
)
from localworld.world import LocalWorld

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
