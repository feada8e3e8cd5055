"""A scenario's figures, and the pure judgements that work them out from its samples and Events."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from localworld.faults.canaries import STEP_REASONS
from modelship import api


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
        canary_a, canary_b = canary_weight(a), canary_weight(b)
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


def timeline(samples: list[Sample], start: float) -> list[str]:
    """Each sample whose step, weight or route differs from the one before, seconds from `start`."""
    out, last = [], None
    for s in samples:
        now = (s.step, s.weight, tuple(sorted(s.route.items())))
        if now != last:
            out.append(f"{s.t - start:.2f}s: step {s.step} weight {s.weight} route {s.route}")
            last = now
    return out


def canary_weight(sample: Sample) -> int | None:
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
