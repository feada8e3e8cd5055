"""The Events of a pass survive the operator's crash (`modelship.core.engine.events`): a pass records
its transitions, each under a name of its own, in the status it writes first; the shell posts them
and clears the record; a pass that finds a record left posts it before anything new.

`Shell` plays the reconciler's pass as far as Events go, over the engine simulator, and stops
after any of its steps as a killed operator would; the API server's Events are a dict by name, so
a second post of one name is AlreadyExists.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship import api, crd
from modelship.core import control, engine, revisions
from modelship.core.engine import events
from modelship.core.manifests import Owner

from .enginesim import OWNER, T0, World, command, spec

pytestmark = pytest.mark.unit

NEW_IMAGE = "registry.example/fraud@sha256:" + "c" * 64
STEPS: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "10s"}},
    {"setWeight": 50},
    {"pause": {}},
]
OBSERVED = engine.Observations(OWNER)  # read at resourceVersion ""


def canary_spec(image: str | None = None) -> api.ModelDeploymentSpec:
    fields: dict[str, Any] = {
        "replicas": 4,
        "strategy": {"canary": {"steps": STEPS, "scaleDownDelay": "20s"}},
    }
    if image:
        fields["image"] = image
    return spec(**fields)


def transitions(decision: engine.Decision) -> list[engine.Event]:
    return [e for e in decision.events if e.series is None]


@dataclass
class Shell:
    """The reconciler's pass over `world`, as far as Events go. `version` is the ModelDeployment's
    resourceVersion: every status write (the operator's or a person's) moves it on."""

    world: World
    version: int = 1
    posted: dict[str, engine.Event] = field(default_factory=dict)  # the API server's Events
    recorded: list[str] = field(default_factory=list)  # names in every status record written
    refused: int = 0  # posts of a name already there (AlreadyExists)
    leave: bool = False  # spec changes wait: a pass leaves what it recorded to the next one

    def post(self, event: engine.Event) -> None:
        if event.series is not None:
            return  # a repeat bumps its series' count: not recorded, not checked here
        assert event.name is not None and event.at is not None
        self.refused += event.name in self.posted
        first = self.posted.setdefault(event.name, event)  # else AlreadyExists: it is there
        same = (first.type, first.reason, first.message[:1024], first.at)
        assert same == (event.type, event.reason, event.message[:1024], event.at), "one name, two Events"

    def write_status(self, status: api.ModelDeploymentStatus) -> None:
        if status != self.world.status:  # the shell writes only a change
            self.world.status = status
            self.version += 1
            self.recorded += [p.name for p in status.pending_events or []]

    def step(self, s: api.ModelDeploymentSpec, stop: int | None = None) -> engine.Decision:
        """One pass; with `stop`, the operator dies after that many of its steps."""
        left = events.left(self.world.status)
        observed = dataclasses.replace(self.world.observations(s), resource_version=str(self.version))
        decision = engine.decide(s, self.world.status, observed, self.world.now)
        steps: list[Callable[[], None]] = [
            *(partial(self.post, e) for e in left),  # before anything new
            partial(self.write_status, decision.status),
            *(partial(self.world.write, w) for w in decision.writes),
        ]
        if not (self.leave and events.all_recorded(decision.events, decision.status)):
            steps += [
                *(partial(self.post, e) for e in decision.events),
                partial(self.write_status, events.posted(decision.status)),  # the clear
            ]
        for run in steps[:stop]:
            run()
        return decision

    def command(self, verb: str, s: api.ModelDeploymentSpec) -> api.ModelDeploymentSpec:
        s, self.world.status = command(verb, s, self.world.status)
        self.version += 1
        return s


def stable_shell() -> Shell:
    """The old revision stable and Healthy, every Event of getting there posted."""
    shell = Shell(World())
    for _ in range(3):
        shell.step(canary_spec())
        shell.world.settle()
    assert shell.world.status.phase == "Healthy" and shell.world.status.pending_events is None
    return shell


def roll_out(stops: Iterator[int | None], leave: bool = False) -> Shell:
    """A canary rollout to its promotion and the old revision's scale-down, each pass stopping where
    `stops` says (at most 30 of them), then passes that run to their end; with `leave`, each pass
    leaves the Events it recorded to the next."""
    shell = stable_shell()
    shell.leave = leave
    s = canary_spec(NEW_IMAGE)
    for _ in range(60):
        shell.step(s, next(stops, None))
        shell.world.settle()
        paused = next((c for c in shell.world.status.conditions or [] if c.type == "Paused"), None)
        if paused is not None and paused.reason == "CanaryPauseStep" and "promote" in paused.message:
            # A pass that stopped early leaves the pause's condition beside the promoted step.
            with contextlib.suppress(control.NotApplicable):
                s = shell.command("promote", s)
        shell.world.tick(5)
    return shell


def test_a_pass_records_its_transitions_named_in_the_status_it_writes() -> None:
    shell = stable_shell()
    decision = shell.step(canary_spec(NEW_IMAGE), stop=1)  # it dies right after the status write
    said = transitions(decision)
    assert [e.reason for e in said] == ["RolloutStarted", "Progressing"]  # the phase changed too
    record = shell.world.status.pending_events or []
    assert [(p.name, p.type, p.reason, p.note, p.time) for p in record] == [
        (e.name, e.type, e.reason, e.message, shell.world.now) for e in said
    ]
    assert shell.posted.keys().isdisjoint(p.name for p in record)
    # The next pass posts them before anything new; a complete pass leaves no record.
    shell.step(canary_spec(NEW_IMAGE))
    assert {p.name for p in record} <= shell.posted.keys()
    assert shell.world.status.pending_events is None


def test_a_record_read_back_names_the_same_events_so_a_second_post_is_refused() -> None:
    world = World()
    world.apply(world.decide(canary_spec()))
    decision = engine.decide(
        canary_spec(),
        world.status,
        dataclasses.replace(world.observations(canary_spec()), resource_version="812"),
        world.now,
    )
    # As the API server stores it, and a restarted operator reads it.
    stored = api.ModelDeploymentStatus.model_validate(api.dump(decision.status))
    assert events.left(stored) == tuple(transitions(decision))
    assert all(e.name is not None and e.at == world.now for e in events.left(stored))


def test_names_are_stable_and_differ_by_model_deployment_version_and_place() -> None:
    other = Owner(name=OWNER.name, namespace=OWNER.namespace, uid="3f0e8a52-0000-4000-8000-000000000002")
    names = {
        events.name(owner, version, index)
        for owner in (OWNER, other)
        for version in ("811", "812")
        for index in range(3)
    }
    assert len(names) == 12
    assert events.name(OWNER, "812", 0) == events.name(OWNER, "812", 0)
    assert all(n.startswith("fraud.") and len(n) == len("fraud.") + 16 for n in names)
    # Deciding twice on the same inputs names the same Events: a pass the operator re-runs after a
    # crash before its status write, posts under the names the record would have had.
    world = World()
    world.apply(world.decide(canary_spec()))
    s = canary_spec(NEW_IMAGE)
    observed = dataclasses.replace(world.observations(s), resource_version="900")
    first, second = (engine.decide(s, world.status, observed, world.now) for _ in range(2))
    assert [e.name for e in first.events] == [e.name for e in second.events]


def test_repeats_are_not_recorded() -> None:
    round_ = engine.Event("Normal", "AnalysisMeasured", "step analysis measured x", series="step/r")
    verdict = engine.Event("Normal", "AnalysisSuccessful", "step analysis of r: passed")
    named, record = events.recorded(api.ModelDeploymentStatus(), [round_, verdict], OBSERVED, T0)
    assert named[0] == round_  # posted as its series, as before
    assert named[1].name == events.name(OWNER, "", 0) and named[1].at == T0
    assert [p.reason for p in record or []] == ["AnalysisSuccessful"]


def test_the_record_is_cleared_once_posted_and_a_pass_with_nothing_new_keeps_what_it_read() -> None:
    shell = stable_shell()
    shell.step(canary_spec(NEW_IMAGE), stop=1)
    left = shell.world.status.pending_events
    assert left
    # Nothing new to say: the decided status keeps the record it read (the shell posted it first),
    # so deciding again on the same inputs changes nothing; posting it clears it.
    again = shell.world.decide(canary_spec(NEW_IMAGE))
    assert transitions(again) == [] and again.status.pending_events == left
    assert events.posted(again.status).pending_events is None
    assert events.posted(again.status).model_copy(update={"pending_events": left}) == again.status
    # Something new: the record is this pass's own transitions (the ones read were posted first).
    for write in again.writes:
        shell.world.write(write)
    shell.world.settle()
    shell.world.tick(5)
    moved = shell.world.decide(canary_spec(NEW_IMAGE))
    assert transitions(moved)
    assert [p.name for p in moved.status.pending_events or []] == [e.name for e in transitions(moved)]


def test_a_pass_records_at_most_the_bound_and_names_every_transition() -> None:
    said = [engine.Event("Normal", "PauseStarted", f"step {i}: paused for 0s") for i in range(20)]
    named, record = events.recorded(api.ModelDeploymentStatus(), said, OBSERVED, T0)
    assert len({e.name for e in named}) == 20
    assert [p.name for p in record or []] == [e.name for e in named[: api.MAX_PENDING_EVENTS]]
    long = engine.Event("Warning", "AnalysisFailed", "x" * 5000)
    _, [kept] = events.recorded(api.ModelDeploymentStatus(), [long], OBSERVED, T0)
    assert len(kept.note) == 1024


def test_a_rollout_without_crashes_posts_each_transition_once_and_leaves_no_record() -> None:
    shell = roll_out(iter(()))
    new = revisions.revision_name(OWNER.name, revisions.template_of(canary_spec(NEW_IMAGE)))
    assert shell.world.status.stable_revision == new
    assert shell.world.status.pending_events is None
    reasons = Counter(e.reason for e in shell.posted.values())
    assert reasons["RolloutStarted"] == reasons["Promoted"] == reasons["ScaledDown"] == 1
    assert reasons["WeightChanged"] == 2 and reasons["PauseStarted"] == 2
    assert sorted(shell.recorded) == sorted(shell.posted)


def test_only_a_pass_whose_record_holds_all_its_events_may_leave_them_to_the_next() -> None:
    said = [engine.Event("Normal", "PauseStarted", f"step {i}: paused for 0s") for i in range(20)]
    named, record = events.recorded(api.ModelDeploymentStatus(), said[:3], OBSERVED, T0)
    assert events.all_recorded(named, api.ModelDeploymentStatus(pending_events=record))
    assert not events.all_recorded((), api.ModelDeploymentStatus(pending_events=record)), "nothing to leave"
    many, bounded = events.recorded(api.ModelDeploymentStatus(), said, OBSERVED, T0)
    assert not events.all_recorded(many, api.ModelDeploymentStatus(pending_events=bounded)), "past the bound"
    round_ = engine.Event("Normal", "AnalysisMeasured", "step analysis measured x", series="step/r")
    mixed, kept = events.recorded(api.ModelDeploymentStatus(), [round_, said[0]], OBSERVED, T0)
    assert not events.all_recorded(mixed, api.ModelDeploymentStatus(pending_events=kept)), "a repeat"


def test_a_rollout_whose_passes_leave_their_events_to_the_next_posts_each_transition_once() -> None:
    calm = roll_out(iter(()))
    shell = roll_out(iter(()), leave=True)
    assert shell.world.status.stable_revision == calm.world.status.stable_revision
    assert shell.world.status.pending_events is None, "the pass with nothing new cleared the last"
    assert set(shell.recorded) == set(shell.posted) and shell.refused == 0
    order = [e.reason for e in shell.posted.values()]  # as posted
    assert Counter(order) == Counter(e.reason for e in calm.posted.values())
    assert order.index("RolloutStarted") < order.index("Promoted") < order.index("ScaledDown")


def test_every_pass_stopping_after_its_kth_step_loses_and_repeats_no_transition() -> None:
    calm = Counter(e.reason for e in roll_out(iter(())).posted.values())
    refused = 0
    for k in range(13):
        shell = roll_out(iter([k] * 30))
        assert set(shell.recorded) == set(shell.posted), k
        assert Counter(e.reason for e in shell.posted.values()) == calm, k
        refused += shell.refused
    assert refused > 0  # some passes stopped between posting and clearing: their Events were re-posted


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.none(), st.integers(min_value=0, max_value=12)), max_size=30))
def test_wherever_each_pass_stops_every_transition_is_posted_once(stops: list[int | None]) -> None:
    shell = roll_out(iter(stops))
    # Every transition a written status recorded was posted, under one name each (`post` checks
    # that no name stands for two Events), and the end leaves no record.
    assert set(shell.recorded) == set(shell.posted)
    assert shell.world.status.pending_events is None
    # The same transitions as without a crash: the rollout's own Events once each.
    reasons = Counter(e.reason for e in shell.posted.values())
    assert reasons["RolloutStarted"] == reasons["Promoted"] == reasons["ScaledDown"] == 1
    assert reasons["WeightChanged"] == 2 and reasons["PauseStarted"] == 2
    calm = Counter(e.reason for e in roll_out(iter(())).posted.values())
    assert reasons == calm


def test_a_decided_time_is_kept_by_the_record_not_the_pass_that_reposts_it() -> None:
    shell = stable_shell()
    shell.step(canary_spec(NEW_IMAGE), stop=1)
    decided = shell.world.now
    shell.world.tick(60)  # the operator comes back a minute later
    shell.step(canary_spec(NEW_IMAGE))
    started = [e for e in shell.posted.values() if e.reason == "RolloutStarted"]
    assert [e.at for e in started] == [decided] and decided < shell.world.now - timedelta(seconds=30)


def test_the_record_is_bounded_and_described_in_the_crd() -> None:
    version = crd.generate()["spec"]["versions"][0]
    field_ = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["pendingEvents"]
    assert field_["maxItems"] == api.MAX_PENDING_EVENTS == 16
    assert field_["x-kubernetes-list-type"] == "map" and field_["x-kubernetes-list-map-keys"] == ["name"]
    assert "posts them first" in field_["description"]
    entry = field_["items"]["properties"]
    assert entry["note"]["maxLength"] == 1024 and entry["name"]["maxLength"] == 253
