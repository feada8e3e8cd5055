"""The scenarios that fault the operator and the spec: a canary with no fault (the baseline),
SIGKILLs at random moments and after each write of a pass, spec flips, an image that never becomes
ready."""

from __future__ import annotations

import random
import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devcluster.cluster import wait_for
from localworld import crashpoint
from localworld.faults.bed import Bed, Recorder
from localworld.faults.canaries import ANALYSIS_RATE, HELD, NEVER_READY, RATE, STEPS4, STEPS8
from localworld.faults.figures import Figures, canary_weight
from localworld.rollouts import at, revision
from modelship import plugin


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
    """Three digests within a second (v3-slow, v3-inaccurate and v2): the one the API server took
    last must be rolled out alone."""
    name = "m"
    bed.deploy(name, STEPS4)
    bed.load(name)
    with Recorder(bed, name, deployments=True) as recorder:
        # The three changes made beforehand and sent at once: on a busy machine one API call took
        # up to 0.7 s, and three in a row longer than the second the scenario is about. Whichever
        # the API server took last (the highest generation) is the spec to end on.
        changes = [bed.image_spec(name, image) for image in ("v3-slow", "v3-inaccurate", "v2")]
        started = time.monotonic()
        with ThreadPoolExecutor(len(changes)) as pool:
            taken = list(pool.map(lambda change: bed.mds.patch(name, change), changes))
        flipped = time.monotonic() - started
        last = max(taken, key=lambda obj: int(obj["metadata"]["generation"]))
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
        # The canaries the route ever gave weight: the flips came faster than a first step.
        weighted_canaries=sorted(
            {s.canary_service or "" for s in recorder.samples if (canary_weight(s) or 0) > 0}
        ),
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
        most_canary_weight=max((canary_weight(s) or 0 for s in recorder.samples), default=0),
        progress_deadline="15s",
    )
    return figures
