"""The order a pass's writes go out in, so that the operator may stop after any one of them and
users are still served by ready pods.

The rule: weight leaves a revision before its Service or pods change, and a revision gets
weight only after its pods are ready and its Service points at them. So:

1. the route, when it takes weight (or a header or session rule) away from the canary's pods (an abort, a
   rollback, a new digest mid-rollout, a blue/green switch back); not at a promotion, where the
   weight moves to the stable Service only as that Service moves to the canary's pods: there the
   Services go first, or the old revision would serve everyone for a moment;
2. Deployments that are created or grow;
3. Services (a selector moves only to pods that the engine saw ready, or that get no weight);
4. the route, when it gives the canary weight (the engine asked for that weight only once the
   canary's pods were ready, and its Service points at them since they were created);
5. Deployments that shrink (their pods lost their weight in 1 or 3);
6. deletions of revision Deployments that no route or Service selects any more, and of an
   experiment's `<name>-challenger` Service once no route sends to it;
7. Jobs stopped (`jobs.stale`): no Service selects a Job's pod, so whenever they go, users are
   not affected.

The status is written before all of them: a crash after it leaves a status whose next pass
decides the same writes again.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelship.core.engine.model import Apply, Delete, DeleteService, Observations, Route, StopJob, Write
from modelship.core.manifests import Manifest


def ordered(
    manifests: Sequence[Manifest],
    delete: Sequence[str],
    route: Route | None,
    canary_service: str,
    observations: Observations,
    stop: Sequence[str] = (),
    delete_services: Sequence[str] = (),
) -> tuple[Write, ...]:
    grow: list[Write] = []
    shrink: list[Write] = []
    services: list[Write] = []
    for manifest in manifests:
        if manifest["kind"] != "Deployment":
            services.append(Apply(manifest))
            continue
        observed = observations.deployments.get(manifest["metadata"]["name"])
        smaller = observed is not None and manifest["spec"]["replicas"] < observed.spec_replicas
        (shrink if smaller else grow).append(Apply(manifest))
    before: list[Write] = []
    after: list[Write] = []
    if route is not None:
        first = _takes_from_canary(route, canary_service, observations) and not _one_revision(
            route, manifests
        )
        (before if first else after).append(route)
    deletions: list[Write] = [Delete(name) for name in delete]
    deletions += [DeleteService(name) for name in delete_services]
    stops: list[Write] = [StopJob(name) for name in stop]
    return (*before, *grow, *services, *after, *shrink, *deletions, *stops)


def _one_revision(route: Route, manifests: Sequence[Manifest]) -> bool:
    """Whether every backend Service of the route is to select the same pods (a promotion)."""
    selectors = {
        m["metadata"]["name"]: frozenset(m["spec"]["selector"].items())
        for m in manifests
        if m["kind"] == "Service" and m["metadata"]["name"] in route.weights
    }
    return len(selectors) == len(route.weights) and len(set(selectors.values())) == 1


def _takes_from_canary(route: Route, canary_service: str, observations: Observations) -> bool:
    read = observations.route.weights if observations.route is not None else None
    if observations.route is not None and set(observations.route.headers) - {h.name for h in route.headers}:
        return True  # a header rule that sent to the canary goes
    kept = observations.route.sessions if observations.route is not None else {}
    if canary_service in set(kept) - set(route.sessions):
        return True  # the canary's session rule goes: its sessions return to stable
    wanted = route.weights.get(canary_service, 0)
    if read is None:  # nothing known to route there: only a zero weight is safe to write first
        return wanted == 0
    return wanted < read.get(canary_service, 0)
