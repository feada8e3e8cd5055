"""Gates a new revision must pass, pure: the smoke test before any traffic, and analysis runs.

Each function looks at one gate and says what the rollout should do about it (`Gate`):
`pass` (go on), `wait` (not decided yet, keep checking), `pause` (a person should look;
the rollout never moves on by itself from here, except that an analysis that was
inconclusive for a while, or could not reach Prometheus, continues once its measurements are
conclusive again) or `abort` (roll back: all traffic to stable, now). The engine applies the
answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from modelship import api
from modelship.core.analysis import runs

GateState = Literal["pass", "wait", "pause", "abort"]


@dataclass(frozen=True)
class SmokeObservation:
    """The shell's smoke test of a revision: every ready pod was sent every input."""

    revision: str
    outputs: tuple[tuple[str, tuple[tuple[float, ...] | str, ...]], ...]  # (pod, output per input or error)


@dataclass(frozen=True)
class Gate:
    state: GateState
    reason: str = ""
    message: str = ""
    run: api.AnalysisRun | None = None  # the run to keep in the status (started or unchanged)
    smoke: api.SmokeTestResult | None = None  # the smoke result to keep in the status
    event: tuple[Literal["Normal", "Warning"], str, str] | None = None


def compare(test: api.SmokeTest, outputs: tuple[tuple[float, ...] | str, ...]) -> str | None:
    """Why `outputs` (one per input, or an error text) do not match `expected`; None when they do."""
    for i, (got, want) in enumerate(zip(outputs, test.expected, strict=True)):
        if isinstance(got, str):
            return f"input {i}: {got}"
        if len(got) != len(want):
            return f"input {i}: {len(got)} output values, expected {len(want)}"
        for j, (g, w) in enumerate(zip(got, want, strict=True)):
            if not math.isfinite(g) or abs(g - w) > test.tolerance:
                return (
                    f"input {i}: output[{j}] = {g:.6g}, expected {w:.6g} within tolerance {test.tolerance:g}"
                )
    return None


def smoke_result(revision: str, recorded: api.SmokeTestResult | None) -> api.SmokeTestResult | None:
    """The smoke test's result for this revision, if it was tested (None: due)."""
    return recorded if recorded is not None and recorded.revision == revision else None


def smoke_passed(test: api.SmokeTest | None, revision: str, recorded: api.SmokeTestResult | None) -> bool:
    """The revision has no smoke test to pass, or has passed it."""
    result = smoke_result(revision, recorded)
    return test is None or (result is not None and result.passed)


def smoke_gate(
    test: api.SmokeTest | None,
    revision: str,
    recorded: api.SmokeTestResult | None,
    observed: SmokeObservation | None,
    now: datetime,
) -> Gate:
    """Before the revision gets any traffic: its outputs for `spec.smokeTest.inputs` must match."""
    if test is None or smoke_passed(test, revision, recorded):
        return Gate("pass", smoke=recorded)
    if observed is None or observed.revision != revision or not observed.outputs:
        return Gate("wait", "SmokeTest", f"smoke test of {revision}: waiting for a ready pod", smoke=recorded)
    for pod, outputs in observed.outputs:
        why = compare(test, outputs)
        if why is not None:
            message = f"smoke test of revision {revision} failed on pod {pod}: {why}"
            result = api.SmokeTestResult(
                revision=revision, passed=False, message=message[:1024], tested_at=now
            )
            return Gate("abort", "SmokeTestFailed", message, smoke=result)
    pods = len(observed.outputs)
    message = f"smoke test of revision {revision} passed: {len(test.inputs)} input(s) on {pods} pod(s)"
    result = api.SmokeTestResult(revision=revision, passed=True, message=message, tested_at=now)
    return Gate("pass", smoke=result, event=("Normal", "SmokeTestPassed", message))


_ABORT_REASONS = {
    "Failed": "AnalysisFailed",
    "Error": "AnalysisError",
    "Unreachable": "PrometheusUnreachable",
}
# An evaluation that could not score the revision (its Job failed) failed it as much as a low score.
_EVALUATION_ABORT_REASONS = {"Failed": "EvaluationFailed", "Error": "EvaluationFailed"}
# An experiment's candidate found worse by its test.
_EXPERIMENT_ABORT_REASONS = {**_ABORT_REASONS, "Failed": "ExperimentFailed"}
_INCONCLUSIVE = {"experiment": "ExperimentInconclusive"}


def analysis_gate(
    kind: api.RunKind,
    revision: str,
    step: int | None,
    label: str,
    analysis: api.Analysis,
    run: api.AnalysisRun | None,
    now: datetime,
) -> Gate:
    """An analysis run of `revision`: start it, or read its phase."""
    if run is None or run.revision != revision or run.step != step:
        started = runs.start(kind, revision, step, analysis, now)
        return Gate(
            "wait",
            "AnalysisRunning",
            f"{label}: analysis {started.message}",
            run=started,
            event=("Normal", "AnalysisStarted", f"{label}: {kind} analysis of revision {revision} started"),
        )
    if run.phase == "Successful":
        return Gate("pass", run=run)
    reasons = {"evaluation": _EVALUATION_ABORT_REASONS, "experiment": _EXPERIMENT_ABORT_REASONS}.get(
        kind, _ABORT_REASONS
    )
    if run.phase in reasons:
        return Gate("abort", reasons[run.phase], f"{label}: {run.message}", run=run)
    if run.phase == "Inconclusive":
        what = "experiment" if kind == "experiment" else "analysis"
        return Gate(
            "pause",
            _INCONCLUSIVE.get(kind, "AnalysisInconclusive"),
            f"{label}: {what} inconclusive: {run.message}. `modelship promote` accepts it, "
            "`modelship abort` rolls back",
            run=run,
        )
    if run.unreachable_since is not None:  # not seeing is not the revision's fault: wait, bounded
        return Gate("pause", "PrometheusUnreachable", f"{label}: {run.message}", run=run)
    waiting = runs.inconclusive_now(run, analysis)
    if waiting is not None:
        return Gate(
            "pause",
            "AnalysisInconclusive",
            f"{label}: {waiting}; measuring again every {analysis.interval}",
            run=run,
        )
    return Gate("wait", "AnalysisRunning", f"{label}: analysis {run.message}", run=run)
