"""The Events of a pass, and the record that lets them survive the operator's crash.

A transition (an `Event` without `series`: a phase, a step, a verdict) is decided once, by the
pass whose status write records it: the next pass reads a status that already shows it and
decides nothing again. So a crash after that write must not lose the Event. The pass records
its transitions in that same status write (`status.pendingEvents`, `recorded`), each under a name
of its own: a hash of the ModelDeployment's uid, the resourceVersion the pass decided on (the
write is guarded by it, so at most one pass per resourceVersion records anything) and the
Event's place in the pass. The shell, in one pass:

1. posts the Events the status it read still records (`left`: a pass stopped before clearing
   them), before anything new; a post refused as AlreadyExists was made before the crash;
2. writes the decided status: it records this pass's transitions or, when there are none, keeps
   the record it read (posted in 1), so deciding again on the same inputs changes nothing;
3. carries out the writes, then posts the Decision's Events in their order;
4. clears the record (`posted`): one more status write, only when there is a record.

While spec changes wait for a worker, the shell leaves 3's posts and 4 to the object's next pass
when the record holds them all (`all_recorded`): that pass, which the status write in 2 triggers,
posts them in its step 1, and the spec changes get the worker sooner.

A crash before 2 posted and recorded nothing: the next pass decides the same transitions again.
A crash after it leaves a record that the next pass posts in its step 1, each Event once. A repeat
(`series`: an analysis round) is not recorded: it bumps the count of one Event per series, and a
crash may lose one bump.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from datetime import datetime

from modelship import api
from modelship.core.engine.model import Event, Observations
from modelship.core.manifests import Owner

NOTE_LENGTH = 1024  # an events.k8s.io Event's note, at most


def name(owner: Owner, resource_version: str, index: int) -> str:
    """The object name of the `index`th transition of the pass that decided on `resource_version`."""
    digest = hashlib.sha256(f"{owner.uid}/transition/{resource_version}/{index}".encode()).hexdigest()
    return f"{owner.name}.{digest[:16]}"


def recorded(
    read: api.ModelDeploymentStatus,
    events: Sequence[Event],
    observations: Observations,
    now: datetime,
) -> tuple[tuple[Event, ...], list[api.PendingEvent] | None]:
    """This pass's Events, each transition named and timed, and the record for the status it
    writes: its transitions or, with none, the record it `read` (`left` posted that before this
    pass decided; the shell clears it once the pass is done). A pass decides a handful of
    transitions; only a spec of many zero-length steps makes more than `MAX_PENDING_EVENTS`, and
    those past it are posted but not recorded."""
    owner, version = observations.owner, observations.resource_version
    named: list[Event] = []
    record: list[api.PendingEvent] = []
    transitions = 0
    for event in events:
        if event.series is None:
            event = dataclasses.replace(event, name=name(owner, version, transitions), at=now)
            transitions += 1
            if len(record) < api.MAX_PENDING_EVENTS:
                record.append(_pending(event))
        named.append(event)
    return tuple(named), record or read.pending_events


def left(status: api.ModelDeploymentStatus) -> tuple[Event, ...]:
    """The Events `status` records and a pass that stopped early may not have posted: the shell
    posts them before anything new."""
    return tuple(Event(p.type, p.reason, p.note, name=p.name, at=p.time) for p in status.pending_events or [])


def all_recorded(events: Sequence[Event], status: api.ModelDeploymentStatus) -> bool:
    """Whether `status` records every one of `events` (none a repeat, none past the record's
    size), so the next pass's `left` would post them all: the shell may leave them to it."""
    names = {p.name for p in status.pending_events or []}
    return bool(events) and all(e.series is None and e.name in names for e in events)


def posted(status: api.ModelDeploymentStatus) -> api.ModelDeploymentStatus:
    """`status` once its pass posted the Events it records."""
    return status.model_copy(update={"pending_events": None})


def _pending(event: Event) -> api.PendingEvent:
    assert event.name is not None and event.at is not None
    return api.PendingEvent(
        name=event.name,
        type=event.type,
        reason=event.reason,
        note=event.message[:NOTE_LENGTH],
        time=event.at,
    )
