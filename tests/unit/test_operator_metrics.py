"""The operator's own metrics: what a reconcile pass records, and the docs naming them."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from modelship import api, metrics

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


def test_a_canary_dropped_with_the_stable_unchanged_and_phase_degraded_is_a_rollback() -> None:
    before = status(phase="Progressing", stableRevision="m-a", canaryRevision="m-b", canaryWeight=20)
    after = status(phase="Degraded", stableRevision="m-a", conditions=progressing("AnalysisFailed"))
    assert metrics.rollback_reason(before, after) == "AnalysisFailed"
    assert metrics.rollback_reason(before, status(phase="RolledBack", stableRevision="m-a")) == "RolledBack"


def test_promotion_first_rollout_and_steady_state_are_not_rollbacks() -> None:
    canary = status(phase="Progressing", stableRevision="m-a", canaryRevision="m-b")
    promoted = status(phase="Healthy", stableRevision="m-b")
    assert metrics.rollback_reason(canary, promoted) is None
    first = status(phase="Progressing")
    assert metrics.rollback_reason(first, status(phase="Degraded", conditions=progressing("X"))) is None
    assert metrics.rollback_reason(canary, canary) is None


def test_a_pass_sets_phase_counts_weight_and_counts_rollbacks_once() -> None:
    ns, name = "metrics-test", "fraud"
    canary = status(phase="Progressing", stableRevision="m-a", canaryRevision="m-b", canaryWeight=30)
    metrics.record_pass(ns, name, status(phase="Healthy", stableRevision="m-a"), canary)
    assert sample("modelship_canary_weight", namespace=ns, name=name) == 30
    progressing_before = sample("modelship_rollouts", phase="Progressing") or 0
    assert progressing_before >= 1

    aborted = status(
        phase="Degraded", stableRevision="m-a", conditions=progressing("ProgressDeadlineExceeded")
    )
    metrics.record_pass(ns, name, canary, aborted)
    metrics.record_pass(ns, name, aborted, aborted)  # the next pass repeats nothing
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
