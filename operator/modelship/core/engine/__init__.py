"""The rollout state machine, pure: `decide(spec, status, observations, now) -> Decision`.

No I/O, no clock, no randomness: the shell observes the cluster, calls `decide`, and
applies the Decision (server-side apply of `apply`, deletion of `delete`, the status,
the events). Every rule lives here; `modelship.core.traffic` turns weights into replicas.

- No stable revision yet: deploy the spec's revision. Pending (its Deployment is not
  observed yet) -> Progressing -> Healthy once all its replicas are available; it then
  becomes `stableRevision` and its template is persisted in `status.stableTemplate`
  (so it can be re-created even after the spec moves on). If the spec changes before
  that, the unproven revision is simply replaced: it never served as stable.
- A stable revision and the spec asks for it: keep its Deployment at `spec.replicas`,
  restore it and the Services if they drift or disappear. Healthy when all replicas
  are available; Progressing while pods come up; Degraded when its Deployment is
  missing or has exceeded `spec.progressDeadline`, as Kubernetes itself reports it.
- The spec asks for another revision (canary strategy): it becomes `status.rollout.canary`
  and walks `spec.strategy.canary.steps` from its `step` (see `canary.walk`). A setWeight
  step completes only once the router shows its weight (`routing`). After the
  last step the whole canary comes up, then it is promoted: the pointers move
  (`stableRevision`, `stableTemplate`), no pod restarts, and the old revision keeps
  running until `scaleDownAt` (`scaleDownDelay` later) before it is deleted.
- A new digest mid-rollout replaces the canary (its traffic returns to stable at
  once; with a route, `<name>-canary` and the old canary's pods stay until a gateway has
  applied that, `routing.draining`) and starts again from step 0; the image reverted to the stable one is an
  immediate rollback (phase RolledBack). A canary whose Deployment exceeds its
  progress deadline is aborted (reason ProgressDeadlineExceeded), as is one named by
  `status.rollout.aborted` (`modelship abort`), one that fails its smoke test or an
  analysis run (`modelship.core.gates`): stable takes all traffic in that same pass, the
  canary's pods stay (no traffic) for `abortScaleDownDelay`, then scale to 0; phase
  Degraded until `retry` clears the field or the spec changes.
- Gates: before a new revision gets any traffic it must pass `spec.smokeTest`; an
  `analysis` step waits for its run; a background run watches the whole canary; a load
  test (a `loadTest` step, `blueGreen.prePromotionLoadTest`) waits until its Job runs
  (`modelship.core.loadtest`); an `experiment` step holds its weight until a statistical test of
  the candidate against stable (or a challenger it runs beside them) decides
  (`modelship.core.experiment`). The
  shell takes the measurements `wants` asks for and passes them in `Observations`. A Job that
  no longer belongs to the rollout (an abort, a promotion, a new digest) is stopped while it runs
  (`jobs.stale`): a load test's load ends with its rollout.
- Blue/green (`bluegreen.preview`, `status.rollout.blueGreen` with its phase Preview ->
  Promoted -> Switched -> Accepted): the new revision runs behind `<name>-preview` with no
  traffic; once its smoke test and pre-promotion analysis pass, a promotion (manual, or
  `autoPromote` after its delay) scales it up and swaps the `<name>`/`<name>-stable`
  selectors in one pass (with post-promotion analysis, the pointers move only once it
  passes). Asking again for the previous stable revision while its pods are still up
  is a fast-track rollback.

Events are derived from what a pass changed, so deciding twice on the same inputs
emits nothing the second time. A pass's transitions are recorded in the status it writes
(`status.pendingEvents`, named so a second post is refused) until the shell has posted them, so
an operator that dies in between loses none and posts none twice (`events`).

Writes are ordered so that the operator may stop after any one of them and users are still
served by ready pods (`writes.ordered`): weight leaves a revision before its Service or pods
change, and a revision gets weight only after its pods are ready and its Service points at
them. The status goes first; a crash after it leaves a status from which the next pass
decides the same writes again.

`wants` says what the shell should measure before `decide` (due analysis runs, a smoke
test, a load test's Job to run and read). A pass builds one frozen `Context` (spec, status,
observations, now, target), works out
an `Outcome` (each rule returns a new one: no module writes to another's state), and one
renderer (`status.finish`) turns it into the Decision. The submodules, each one concept:

- `model`: the data read and returned (Observations, Decision, Event, Wants), the
  Context and Outcome of one pass, and helpers about one observed Deployment (`current`,
  `ready`, `health_of`).
- `moves`: what a pass can do to its outcome: carry out a gate's answer, abort, promote.
- `rollout`: one pass with a stable revision: steady, a rollout in progress, or aborted.
- `canary`, `bluegreen`: the two strategies' walks to promotion.
- `accelerator`: device-aware replicas, placement, the device conditions.
- `routing`: what the router read back, judged (`TrafficRouted`, a step held for it).
- `writes`: the crash-safe order of a Decision's writes.
- `jobs`: the running Jobs that no longer belong to the rollout (aborted, promoted, replaced), to stop.
- `events`: a pass's Events named and recorded in its status, so a crash loses none.
- `status`: the outcome rendered into a Decision (phase, conditions, writes, events).
"""

from __future__ import annotations

from datetime import datetime

from modelship import api
from modelship.core import evaluation, gates, loadtest, revisions
from modelship.core.analysis import cadence, runs
from modelship.core.engine import events, rollout
from modelship.core.engine.model import (
    Apply,
    Context,
    Decision,
    Delete,
    DeleteService,
    Event,
    Observations,
    ObservedDeployment,
    Outcome,
    Route,
    RouteObservation,
    StopJob,
    Wants,
    Write,
    current,
    live,
)
from modelship.core.engine.status import finish

__all__ = [
    "Apply",
    "Decision",
    "Delete",
    "DeleteService",
    "Event",
    "Observations",
    "ObservedDeployment",
    "Route",
    "RouteObservation",
    "StopJob",
    "Wants",
    "Write",
    "decide",
    "events",
    "wants",
]


def wants(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> Wants:
    def wanted(run: api.AnalysisRun) -> bool:
        analysis = evaluation.analysis_of(spec, run)
        return (
            analysis is not None
            and live(status, run)
            and (runs.due(run, analysis, now) or cadence.fast(run, analysis, now, observations.scrape))
        )

    due = tuple(r for r in status.analysis or [] if wanted(r))
    canary = status.rolling
    smoke = None
    if spec.smoke_test is not None and canary is not None and not status.new_revision_weight:
        observed = observations.deployments.get(canary)
        fresh = gates.smoke_result(canary, status.smoke_test) is None
        if fresh and observed is not None and current(observed) and observed.available_replicas >= 1:
            smoke = canary
    return Wants(due, smoke, loadtest.wanted(observations.owner, spec, status))


def decide(
    spec: api.ModelDeploymentSpec,
    status: api.ModelDeploymentStatus,
    observations: Observations,
    now: datetime,
) -> Decision:
    template = revisions.template_of(spec)
    target = revisions.revision_name(observations.owner.name, template)
    measured, said = rollout.measured(spec, status, observations, now)
    status = status.model_copy(update={"analysis": measured})
    ctx = Context(spec, status, observations, now, template, target)
    if status.stable_revision is None or status.stable_template is None:
        # A stable pointer without its template cannot be re-rendered (status edited
        # by hand); treat it as unset rather than guess what the stable pods were.
        return finish(ctx, Outcome(target, template, mode="first", stable_replicas=spec.replicas))
    return finish(ctx, rollout.advance(ctx, tuple(said)))
