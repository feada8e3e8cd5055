"""The operator's own metrics: what a reconcile pass records, and the docs naming them."""

from __future__ import annotations

import dataclasses
import gc
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelship import api, metrics

from .enginesim import World, command, spec
from .test_analysis_engine import BAD_ERRORS, with_analysis
from .test_canary import NEW_IMAGE, canary_spec, stable_world, step

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def status(**fields: Any) -> api.ModelDeploymentStatus:
    return api.ModelDeploymentStatus.model_validate(fields)


def progressing(reason: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "Progressing",
            "status": "False",
            "reason": reason,
            "lastTransitionTime": T0.isoformat(),
            "observedGeneration": 2,
        }
    ]


def sample(metric: str, **labels: str) -> float | None:
    return metrics.REGISTRY.get_sample_value(metric, labels)


# Which pass rolled a rollout back, and why, is the engine's to say (`Decision.rolled_back`);
# `record_pass` counts it.


def test_a_canary_dropped_with_the_stable_unchanged_and_phase_degraded_is_a_rollback() -> None:
    service = {"router": "service"}
    old = with_analysis(traffic=service)
    world = stable_world(old)
    new = with_analysis(NEW_IMAGE, traffic=service)
    step(world, new)
    world.metrics["errors"] = BAD_ERRORS
    world.tick(5)
    decision = world.decide(new)
    assert (decision.status.phase, decision.status.stable_revision) == (
        "Degraded",
        world.status.stable_revision,
    )
    assert decision.rolled_back == "AnalysisFailed"
    # The spec reverted to stable while the canary ran.
    assert world.decide(old).rolled_back == "RolledBack"


def test_promotion_first_rollout_and_steady_state_are_not_rollbacks() -> None:
    old = canary_spec()
    world = stable_world(old)
    assert world.decide(old).rolled_back is None  # steady state
    new = canary_spec(NEW_IMAGE)
    step(world, new)
    assert world.status.rolling is not None
    assert world.decide(new).rolled_back is None  # a canary carrying on
    new, world.status = command("promote", new, world.status, full=True)
    world.reconcile(new)
    world.settle()
    promotion = world.decide(new)
    assert promotion.status.stable_revision != world.status.stable_revision
    assert promotion.rolled_back is None
    first = World()  # a first revision that never becomes available
    first.reconcile(spec())
    name = next(iter(first.deployments))
    first.deployments[name] = dataclasses.replace(
        first.deployments[name], observed_generation=1, deadline_exceeded=True
    )
    stuck = first.decide(spec())
    assert stuck.status.phase == "Degraded" and stuck.rolled_back is None


def test_a_pass_sets_phase_counts_weight_and_counts_rollbacks_once() -> None:
    ns, name = "metrics-test", "fraud"
    canary = status(
        phase="Progressing", stableRevision="m-a", rollout={"canary": {"revision": "m-b", "weight": 30}}
    )
    metrics.record_pass(ns, name, status(phase="Healthy", stableRevision="m-a"), canary, None)
    assert sample("modelship_canary_weight", namespace=ns, name=name) == 30
    progressing_before = sample("modelship_rollouts", phase="Progressing") or 0
    assert progressing_before >= 1

    aborted = status(
        phase="Degraded", stableRevision="m-a", conditions=progressing("ProgressDeadlineExceeded")
    )
    metrics.record_pass(ns, name, canary, aborted, "ProgressDeadlineExceeded")
    metrics.record_pass(ns, name, aborted, aborted, None)  # the next pass repeats nothing
    total = sample("modelship_rollbacks_total", namespace=ns, name=name, reason="ProgressDeadlineExceeded")
    assert total == 1
    assert sample("modelship_canary_weight", namespace=ns, name=name) == 0
    assert sample("modelship_rollouts", phase="Progressing") == progressing_before - 1

    metrics.forget(ns, name)
    assert sample("modelship_canary_weight", namespace=ns, name=name) is None


def test_docs_list_every_operator_metric() -> None:
    doc = (REPO / "docs" / "metrics.md").read_text()
    section = doc[doc.index("## The operator's metrics") :]
    for name in metrics.NAMES:
        assert f"`{name}`" in section, name


def test_the_process_cpu_memory_and_garbage_collections_are_served_beside_the_operators_own() -> None:
    before = sample("python_gc_collections_total", generation="2") or 0.0
    gc.collect()
    assert sample("python_gc_collections_total", generation="2") == before + 1
    assert (sample("process_resident_memory_bytes") or 0) > 10_000_000
    assert sample("process_cpu_seconds_total") is not None
