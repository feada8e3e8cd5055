"""Online accuracy through Traefik with no stickiness: three replicas per revision, every label
sent to whichever pod the gateway picks. Feedback tokens let that pod forward the label to the
one that answered, so (nearly) every row counts, for the revision that made the prediction, and
a canary with bad accuracy is rolled back by the accuracy metric alone."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from localworld.podmetrics import FEEDBACK, served_by_revision
from localworld.rollouts import model_deployment

from .conftest import Rollout

pytestmark = pytest.mark.e2e

NAME = "risk"
REPLICAS = 3
ACCURACY_ONLY: dict[str, Any] = {
    "interval": "3s",
    "count": 2,
    "window": "20s",
    "minRequests": 5,
    "metrics": [{"name": "accuracy", "template": "accuracy", "min": 0.6}],
}
STEPS: list[dict[str, Any]] = [{"setWeight": 30}, {"analysis": {}}, {"setWeight": 60}, {"analysis": {}}]


def labelled(r: Rollout) -> Counter[str]:
    """Feedback rows each revision's pods scored (correct or not), from their own /metrics."""
    return served_by_revision(r.core, r.namespace, metric=FEEDBACK, route=None)


def test_labels_through_traefik_count_for_the_revision_that_answered_and_bad_accuracy_rolls_back(
    rollout: Rollout,
) -> None:
    manifest = model_deployment(
        NAME, rollout.world.image("v1"), "v1", STEPS, replicas=REPLICAS, analysis=ACCURACY_ONLY
    )
    rollout.create(manifest)
    v1 = rollout.mds.wait_phase(NAME, "Healthy")["stableRevision"]

    # Every prediction gets its label, sent through Traefik to any of the three replicas.
    before_requests, before_labels = rollout.served(), labelled(rollout)
    summary = rollout.load(rollout.endpoint(NAME), rate=30, duration=10, feedback_ratio=1).wait()
    predicted = rollout.served()[v1] - before_requests[v1]
    counted = labelled(rollout)[v1] - before_labels[v1]
    assert summary.codes == {200: 300} and predicted == 300, summary.lines()
    assert summary.feedback_codes.get(200, 0) >= 0.99 * 300, summary.feedback_codes
    assert 0.99 * predicted <= counted <= predicted, (counted, predicted)

    # A canary with accuracy 0.04: the accuracy metric alone fails it.
    load = rollout.load(rollout.endpoint(NAME), rate=30, duration=240, feedback_ratio=0.5)
    rollout.set_image(NAME, "v3-inaccurate")
    status = rollout.mds.wait_phase(NAME, "Degraded", timeout=150)
    condition = next(c for c in status["conditions"] if c["type"] == "Progressing")
    assert condition["reason"] == "AnalysisFailed" and "accuracy = " in condition["message"], condition
    assert status["stableRevision"] == v1
    summary = load.stop()
    lost = summary.feedback_codes.get(404, 0) + summary.feedback_codes.get(410, 0)
    assert lost <= 0.01 * summary.feedback_sent + 2, summary.feedback_codes  # a pod going away may lose a few
