"""Flux's view of a ModelDeployment: kstatus (sigs.k8s.io/cli-utils, the library Flux's health
checks use, built by hack/devcluster/kstatus.py) on the objects the real API server holds through
a rollout: Current when done, InProgress while a rollout is in flight (held at a pause too), and
Failed once the candidate was refused (aborted) until `retry`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devcluster import kstatus
from modelship.kube.storage import Storage

from .gitopshelpers import IMAGES, at_pause, condition, manifest, read, set_image, until, verb
from .mdhelpers import Operator, crd_installed, deploy_stable, kube, operator

__all__ = ["crd_installed", "kube", "operator"]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def kstatus_bin() -> Path:
    return kstatus.binary(kstatus.build())


def flux_view(obj: dict[str, Any], bin: Path) -> tuple[str, str]:
    result = kstatus.compute(obj, bin)
    return result["status"], result["message"]


def test_kstatus_says_current_when_done_in_progress_during_a_rollout_and_failed_once_aborted(
    kube: Storage, namespace: str, operator: Operator, kstatus_bin: Path
) -> None:
    deploy_stable(kube, namespace, manifest())
    assert flux_view(read(kube, namespace), kstatus_bin)[0] == "Current"

    set_image(kube, namespace, IMAGES["b"])
    assert flux_view(read(kube, namespace), kstatus_bin)[0] == "InProgress"  # a spec not yet observed
    held = at_pause(kube, namespace, step=1)
    # Held at a pause for `promote`: in flight, not stuck (Flux waits, it does not fail).
    assert flux_view(held, kstatus_bin)[0] == "InProgress"

    verb(kube, namespace, "abort")
    # The operator's verdict on it, not the verb's own patch: Stalled, written by its next pass.
    aborted = until(
        kube, namespace, "the rollout aborted", lambda o: condition(o, "Stalled")["status"] == "True"
    )  # type: ignore[index]
    state, message = flux_view(aborted, kstatus_bin)
    assert state == "Failed" and "aborted" in message, message
    # Stays Failed: nothing moves until a person retries or Git changes the spec.
    assert flux_view(read(kube, namespace), kstatus_bin)[0] == "Failed"

    verb(kube, namespace, "retry")
    restarted = until(
        kube, namespace, "the rollout restarted", lambda o: "canary" in (o["status"].get("rollout") or {})
    )
    assert flux_view(restarted, kstatus_bin)[0] == "InProgress"

    verb(kube, namespace, "promote", full=True)
    done = until(kube, namespace, "the canary promoted", lambda o: o["status"].get("phase") == "Healthy")
    assert flux_view(done, kstatus_bin)[0] == "Current"
