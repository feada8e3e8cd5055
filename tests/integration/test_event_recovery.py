"""Events survive the operator's crash: a pass records its transition Events in its first status
write (status.pendingEvents) and clears them once posted, and the next pass posts what a crash
left, each once. Against the real API server, with reconcile passes driven in-process.

A fleet of K ModelDeployments (test_crash_points.Fleet) walks one canary rollout in lockstep. At
each move that decides transition Events, ModelDeployment k's pass dies after its k-th write
(`Storage(crash_after=k)`; posting an Event is a write), and normal passes then finish the move.
Right after each crash, every pass that died between its status write and its last write (the
clear) has left its Events recorded; the one that died just before the clear had posted them
all already, so the next pass's posts of them are refused as AlreadyExists. At the end every
ModelDeployment's Events (events.k8s.io/v1, listed by regarding uid) say each transition once
(`Fleet.check_events`: the rollout's Events are those of the one that never crashed, its phase
Events change the phase each time, nothing is there twice), and each recorded name is one of them.

Each move starts from a hold point (a pause, a promoted or an aborted rollout) and is made by the
first pass after a person's `modelship` verb or a new image: a pause starting (PauseStarted), a
weight step (WeightChanged, Progressing), the promotion (Promoted, StableRevision, Healthy), a new
digest mid-rollout (CanaryReplaced, RolloutStarted) and an abort (Aborted, Degraded).

The same walk carries test_crash_points.py's claim for these canary moves: after every crash, and
again a moment later, no route weight points at a Service without a Ready pod
(`Fleet.crash_every_point`), nor after any pass that finishes a move (`Fleet.drive`), and each move
ends where it should (the new canary at its step with the old one deleted; all traffic on stable
after the abort). One fleet walks all five: setting up a fleet is most of such a test's time.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client

from localworld.rollouts import at, revision
from modelship.kube.reconciler import Reconciler
from modelship.kube.storage import (
    FIELD_MANAGER,
    Manifest,
    Storage,
    deployments_path,
    md_path,
    series_events_path,
)

from .mdhelpers import crd_installed, kube
from .test_crash_points import IMAGES, LOG, Fleet, canary_at, route_weights, selects

__all__ = ["crd_installed", "kube"]
pytestmark = pytest.mark.integration

# The canary's two pods are up from the first step on, so the pass after a `promote` is the move
# itself: a weight step needs no new pods, the promotion no scale-up. Each pause is a hold point.
CANARY = {
    "canary": {
        "steps": [
            {"setCanaryScale": {"replicas": 2}},
            {"setWeight": 50},
            {"pause": {}},
            {"pause": {"duration": "1h"}},
            {"setWeight": 60},
            {"pause": {}},
        ],
        "scaleDownDelay": "2s",
    }
}


def recorded(fleet: Fleet, name: str) -> list[str]:
    return [p["name"] for p in fleet.status(name).get("pendingEvents") or []]


def posted(fleet: Fleet, name: str) -> bool:
    return fleet.kube.get(series_events_path(fleet.namespace, name)) is not None


def settled(fleet: Fleet, done: Callable[[str], bool]) -> Callable[[str], bool]:
    """`done`, and what a crash left recorded is posted: a ModelDeployment that died after its move's
    last write is at the next hold point already, and it is the next pass, which the operator runs
    on the next trigger, that posts the record (before the next move, and counted as writes)."""
    return lambda name: done(name) and not recorded(fleet, name)


def crash_every_point(fleet: Fleet, names: dict[str, list[str]]) -> None:
    """ModelDeployment k's next pass dies after its k-th write; adds what each one recorded to `names`."""
    made = fleet.crash_every_point()
    full = max(made.values())  # the writes of a pass that ran to its end: the last is the clear
    for k, name in enumerate(fleet.names, 1):
        left = recorded(fleet, name)
        if k >= full:  # it cleared what it posted (or never crashed)
            assert left == [], (name, made)
            continue
        assert left, (name, made)  # died after its status write, before the clear
        names.setdefault(name, []).extend(left)
        if k == 1:  # right after the status write: nothing posted yet
            assert not any(posted(fleet, n) for n in left), name
        if k == full - 1:  # right after its last post: every Event is there, the record too
            assert all(posted(fleet, n) for n in left), name


def test_every_transition_event_is_posted_once_whichever_write_the_operator_died_after(
    api_client: client.ApiClient, kube: Storage, namespace: str, crd_installed: None
) -> None:
    fleet = Fleet(api_client, kube, namespace, CANARY)
    names: dict[str, list[str]] = {}
    fleet.create()
    fleet.set_image(IMAGES["b"])
    fleet.drive(
        "canaries paused at step 2, 50% on their routes", lambda n: canary_at(fleet, n, IMAGES["b"], 2, 50)
    )

    # A pause starting: `promote` ends the pause at step 2, the next pass starts the timed one.
    fleet.verb("promote")
    crash_every_point(fleet, names)

    def timed(name: str) -> bool:
        return canary_at(fleet, name, IMAGES["b"], 3, 50) and at(
            fleet.status(name), "rollout.canary.pauseStartTime"
        )

    fleet.drive("in the timed pause", settled(fleet, timed))

    # A weight step: `promote` ends the timed pause, the next pass gives the canary 60%.
    fleet.verb("promote")
    crash_every_point(fleet, names)
    fleet.drive("paused at the last step", settled(fleet, lambda n: canary_at(fleet, n, IMAGES["b"], 5, 60)))

    # The promotion: `promote` goes past the last step, the next pass promotes.
    fleet.verb("promote")
    crash_every_point(fleet, names)

    def promoted(name: str) -> bool:
        status = fleet.status(name)
        new = revision(fleet.manifest(name, IMAGES["b"]))
        shown = route_weights(fleet.kube, fleet.namespace, name)
        stable = selects(fleet.kube, fleet.namespace, f"{name}-stable")
        return status.get("phase") == "Healthy" and stable == new and shown.get(f"{name}-stable") == 100

    fleet.drive("promoted", settled(fleet, promoted))

    # The next rollout.
    fleet.set_image(IMAGES["c"])
    fleet.drive(
        "the next canaries at step 2", settled(fleet, lambda n: canary_at(fleet, n, IMAGES["c"], 2, 50))
    )

    # A new digest mid-rollout: d's canaries replace c's, whose traffic goes back to stable first.
    fleet.set_image(IMAGES["d"])
    crash_every_point(fleet, names)

    def replaced(name: str) -> bool:
        old = revision(fleet.manifest(name, IMAGES["c"]))
        gone = fleet.kube.get(deployments_path(fleet.namespace, old)) is None
        return gone and canary_at(fleet, name, IMAGES["d"], 2, 50)

    fleet.drive("d's canaries at step 2, c's deleted", settled(fleet, replaced))

    # An abort of that rollout.
    fleet.verb("abort")
    crash_every_point(fleet, names)

    def aborted(name: str) -> bool:
        status: dict[str, Any] = fleet.status(name)
        canary = revision(fleet.manifest(name, IMAGES["d"]))
        shown = route_weights(fleet.kube, fleet.namespace, name)
        return (
            status.get("phase") == "Degraded"
            and at(status, "rollout.aborted.revision") == canary
            and shown == {f"{name}-stable": 100, f"{name}-canary": 0}
        )

    fleet.drive("aborted, all traffic on stable", aborted)

    counts = fleet.check_events()
    for reason, times in {
        "RolloutStarted": 3,  # b, c, d
        "WeightChanged": 4,  # b: 0 -> 50 -> 60; c: 0 -> 50; d: 0 -> 50
        "PauseStarted": 5,  # b: steps 2, 3 and 5; c and d: step 2
        "Promoted": 1,
        "StableRevision": 2,  # a, then b
        "ScaledDown": 1,
        "CanaryReplaced": 1,
        "Aborted": 1,
    }.items():
        assert sum(n for (_, r), n in counts.items() if r == reason) == times, (reason, counts)
    for name, left in names.items():
        events = {e["metadata"]["name"] for e in fleet.transitions(name)}
        assert set(left) <= events, name


class Interloper(Storage):
    """A storage through which someone else (a `kubectl annotate`, say) changes the ModelDeployment
    right before the first status patch that only clears the Events record: that patch is refused
    on the resourceVersion it carries."""

    touched = 0

    def patch_md(
        self,
        namespace: str,
        name: str,
        part: Any,
        patch: Manifest,
        resource_version: str,
        field_manager: str = FIELD_MANAGER,
    ) -> str | None:
        if part == "status" and patch == {"pendingEvents": None} and not self.touched:
            self.touched += 1
            note = {"metadata": {"annotations": {"example.com/touched": str(self.touched)}}}
            self.merge(md_path(namespace, name), note)
        return super().patch_md(namespace, name, part, patch, resource_version, field_manager)


def _one_new_image(api_client: client.ApiClient, kube: Storage, namespace: str) -> tuple[Fleet, str]:
    """One stable ModelDeployment given a new image: its next pass starts the rollout."""
    fleet = Fleet(api_client, kube, namespace, CANARY)
    fleet.names = fleet.names[:1]
    fleet.create()
    fleet.set_image(IMAGES["b"])
    return fleet, fleet.names[0]


def test_a_pass_clears_the_events_it_posted_even_when_the_object_changed_just_before(
    api_client: client.ApiClient, kube: Storage, namespace: str, crd_installed: None
) -> None:
    fleet, name = _one_new_image(api_client, kube, namespace)
    storage = Interloper(api_client)
    Reconciler(storage).step(namespace, name, LOG)  # starts the rollout: Events recorded, posted
    assert storage.touched == 1
    assert "RolloutStarted" in {e["reason"] for e in fleet.transitions(name)}
    # Nothing else would clear the record: a paused, steady object may see no pass for long.
    assert not fleet.status(name).get("pendingEvents"), fleet.status(name)


class Busy(Reconciler):
    """A reconciler whose queue has spec changes waiting, as in a burst of rollouts."""

    def _spec_waiting(self) -> bool:
        return True


def test_while_spec_changes_wait_a_pass_leaves_its_events_to_the_next_which_posts_them_first(
    api_client: client.ApiClient, kube: Storage, namespace: str, crd_installed: None
) -> None:
    fleet, name = _one_new_image(api_client, kube, namespace)
    Busy(Storage(api_client)).step(namespace, name, LOG)  # starts the rollout
    recorded = [p["reason"] for p in fleet.status(name).get("pendingEvents") or []]
    assert "RolloutStarted" in recorded, fleet.status(name)
    assert "RolloutStarted" not in {e["reason"] for e in fleet.transitions(name)}, "left, not posted"
    Reconciler(Storage(api_client)).step(namespace, name, LOG)  # the pass its status write triggers
    posted = [e["reason"] for e in fleet.transitions(name)]
    assert set(recorded) <= set(posted)
    assert not fleet.status(name).get("pendingEvents"), fleet.status(name)
