"""The scenarios that fault the world around the operator: a serving pod, the API server and
etcd, the gateway, Prometheus."""

from __future__ import annotations

import contextlib
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

from kubernetes import client

from devcluster.cluster import wait_for
from localworld.faults.bed import Bed, Recorder, kill_container
from localworld.faults.canaries import (
    ANALYSIS,
    ANALYSIS_RATE,
    ANALYSIS_STEPS,
    INTERVAL_SECONDS,
    STEPS8,
    UNREACHABLE_TIMEOUT,
)
from localworld.faults.figures import Figures, Sample, canary_weight, timeline
from localworld.podmetrics import served_by_revision
from localworld.rollouts import at
from localworld.world import LocalWorld


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
        # The first weight was taken while the gateway ran: samples must show it so before the
        # stop, or it would count as a weight step done while the gateway was down.
        recorder.shown("step 1", lambda s: (s.step or 0) >= 1 and canary_weight(s) == steps[0]["setWeight"])
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
        # When the gateway was down (from its stop to its start), and what the status showed.
        down_window_s=[round(down - started, 2), round(back - started, 2)],
        timeline=timeline(recorder.samples, started),
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
            shown = (s.t for s in samples if canary_weight(s) == step[kind] and s.canary_service == s.canary)
            written = next(shown, None)
            first = next((s.t for s in samples if s.step is not None and s.step > i), None)
            done += written is not None and first is not None and start <= written and first < end
    return done


def reached(step: int) -> Callable[[dict[str, Any]], bool]:
    """A status test: the canary's step index is `step` or beyond."""
    return lambda status: (at(status, "rollout.canary.step") or 0) >= step


def _in_turn(reasons: Iterable[str]) -> list[str]:
    """`reasons` in the order shown, each run of one reason counted once."""
    out: list[str] = []
    for reason in reasons:
        if not out or out[-1] != reason:
            out.append(reason)
    return out


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
            # Step 1 (the analysis) before the stop, in the samples too: see run_gateway_restart.
            recorders[n].shown("the analysis step", lambda s: (s.step or 0) >= 1)
        down = time.monotonic()
        world.stop_component("prometheus")
        try:
            time.sleep(intervals * INTERVAL_SECONDS)
        finally:
            # The window "while down" ends as Prometheus starts again: once it answers, the first
            # measurement may see the outage's gap in its window and be inconclusive (few requests
            # scraped), which is a verdict on data, not on the outage.
            up = time.monotonic()
            world.start_component("prometheus")
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
            paused_reasons_while_down=_in_turn(s.paused_reason for s in window if s.paused_reason),
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
                most_canary_weight_after_rollback=canary_weight(bed.sample(n)),
            )
        out.append(figures)
    return out
