"""What the demo prints: a progress line every few seconds and a summary at the end (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from demo.acts import Act
from localworld.rollouts import at, rolling_revision


@dataclass(frozen=True)
class RevisionStats:
    """A revision's live numbers from Prometheus (None: no data yet)."""

    rate: float | None = None  # predict requests per second
    error_ratio: float | None = None  # share answered 5xx
    p99: float | None = None  # seconds
    accuracy: float | None = None  # from feedback labels


def vector(result: list[dict[str, Any]], label: str = "revision") -> dict[str, float]:
    """A Prometheus instant vector as {label value: number}, without NaN (no data) entries."""
    out = {}
    for sample in result:
        value = float(sample["value"][1])
        if not math.isnan(value):
            out[sample["metric"].get(label, "")] = value
    return out


def combine(
    rates: Mapping[str, float],
    errors: Mapping[str, float],
    p99s: Mapping[str, float],
    correct: Mapping[str, float],
    scored: Mapping[str, float],
) -> dict[str, RevisionStats]:
    """Per revision: request rate, error ratio (5xx rate / rate), p99, accuracy (correct / scored)."""
    out = {}
    for rev in set(rates) | set(p99s) | set(scored):
        rate = rates.get(rev)
        out[rev] = RevisionStats(
            rate=rate,
            error_ratio=(errors.get(rev, 0.0) / rate) if rate else None,
            p99=p99s.get(rev),
            accuracy=(correct.get(rev, 0.0) / scored[rev]) if scored.get(rev) else None,
        )
    return out


def describe_steps(steps: list[dict[str, Any]]) -> str:
    """Canary steps as the demo announces them: `20% -> pause 4s -> 50% -> analysis`."""
    out = []
    for step in steps:
        if "setWeight" in step:
            out.append(f"{step['setWeight']}%")
        elif "pause" in step:
            duration = (step["pause"] or {}).get("duration")
            out.append(f"pause {duration}" if duration else "pause")
        else:
            out.append(next(iter(step), "?"))
    return " -> ".join(out)


def _revision(name: str, stats: RevisionStats | None) -> str:
    if stats is None or stats.rate is None:
        return f"{name} no traffic"
    parts = [f"{name} {stats.rate:5.1f}/s"]
    parts.append("err    -" if stats.error_ratio is None else f"err {stats.error_ratio:5.1%}")
    parts.append("p99     -" if stats.p99 is None else f"p99 {stats.p99 * 1000:4.0f}ms")
    if stats.accuracy is not None:
        parts.append(f"acc {stats.accuracy:.2f}")
    return " ".join(parts)


def progress_line(
    elapsed: float,
    act: Act,
    status: Mapping[str, Any],
    images: Mapping[str, str],
    stats: Mapping[str, RevisionStats],
) -> str:
    """One line: time, act, step, canary weight, phase, then each revision's live numbers.

    `images` maps revision names to the image (model) names shown; the stable revision comes first.
    """
    canary = at(status, "rollout.canary")  # absent unless a canary is in progress
    step = None if canary is None else int(canary.get("step") or 0)
    shown_step = "-" if step is None else f"{step}/{len(act.steps)}"  # steps done, as kubectl shows
    weight = int(at(status, "rollout.canary.weight", 0))
    phase = status.get("phase") or "Pending"
    head = f"{elapsed:5.0f}s  act {act.number}  step {shown_step:>5}  canary {weight:3d}%  {phase:<11}"
    revisions = [r for r in (status.get("stableRevision"), rolling_revision(status)) if r]
    revisions += sorted(r for r in stats if r not in revisions and (stats[r].rate or 0) > 0)
    columns = [_revision(images.get(r, r), stats.get(r)) for r in revisions]
    return "  |  ".join([head, *columns])


@dataclass(frozen=True)
class ActResult:
    act: Act
    phase: str  # the phase it ended in (or what it was when it timed out)
    seconds: float
    stable_image: str | None  # which image serves all traffic at the end
    requests: int  # through the gateway during the act
    errors: int
    verdicts: list[str] = field(default_factory=list)  # analysis's last verdicts, the abort reason
    rollback_seconds: float | None = None  # a bad act: its first canary request -> canary weight 0

    @property
    def as_expected(self) -> bool:
        return self.phase == self.act.expect and self.stable_image == self.act.expected_stable


def act_end_lines(result: ActResult) -> list[str]:
    """Printed when an act ends: the verdicts, and how long the bad canary served users."""
    lines = [f"  {v}" for v in result.verdicts]
    if result.rollback_seconds is not None:
        lines.append(
            f"  rolled back {result.rollback_seconds:.1f}s after the canary's first request "
            "(first bad request -> canary weight 0)"
        )
    return lines


def summary_lines(results: list[ActResult], planned: int) -> list[str]:
    lines = ["", "summary"]
    for r in results:
        verdict = "as expected" if r.as_expected else f"NOT as expected (wanted {r.act.expect})"
        lines.append(
            f"  act {r.act.number}: {r.act.title}: {r.act.from_image} -> {r.act.to_image}: "
            f"{r.phase} in {r.seconds:.0f}s, {r.stable_image or 'nothing'} serves all traffic; {verdict}"
        )
        lines.append(f"         {r.requests} requests through the gateway, {r.errors} failed")
        if r.rollback_seconds is not None:
            lines.append(
                f"         the bad canary served users for {r.rollback_seconds:.1f}s before its weight was 0"
            )
    good = sum(r.as_expected for r in results)
    if len(results) < planned:
        lines.append(f"  stopped after {len(results)} of {planned} acts")
    lines.append(f"  {good}/{planned} acts ended as expected")
    return lines
