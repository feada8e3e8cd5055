"""What the router read back, judged: is the weight a step asked for really in effect?

The same judgement for every router with a route to read (an HTTPRoute, an Istio VirtualService):
the shell reads either into one `RouteObservation`, whose `kind` names the object in messages.

A setWeight step (and a blue/green switch) completes only once the route shows its weights,
as Argo Rollouts does, and the gateways reporting on the route have accepted that version of it;
until then the step holds and `TrafficRouted` says which backend has which weight. The
`service` router has no route to read: its weight is its ready pods, which the steps already
wait for.

`actual_weight` is the share of requests the canary really gets (`status.rollout.canary.actualWeight`),
and `reach` warns (`WeightUnreachable`) when the replicas cannot approach a step's weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from modelship import api
from modelship.core import gateway, istio, traffic
from modelship.core.engine.model import (
    ConditionValue,
    Event,
    Observations,
    ObservedDeployment,
    Outcome,
    RouteObservation,
    has,
)
from modelship.core.shadow import Shadow

# While a gateway has not accepted the route's current weights, look again this soon: nothing
# else (no watch of the route) starts the next pass, and the resync may be 30 s away.
GATEWAY_RECHECK = timedelta(seconds=1)
# `TrafficRouted`'s reason while the route is right but its backend lists no ready pod yet.
ENDPOINTS_PENDING = "EndpointsPending"


def sessions(
    spec: api.ModelDeploymentSpec, owner_name: str, weight: int, stable: str, canary: str | None
) -> dict[str, str]:
    """The sticky sessions the route keeps with the canary at `weight` (`gateway.sessions`): each
    backend with weight keeps its revision's; none without spec.traffic.sessionAffinity."""
    if spec.traffic.session_affinity is None:
        return {}
    return gateway.sessions(owner_name, gateway.weights(owner_name, weight), stable, canary)


def verified(observations: Observations, weight: int, kept: Mapping[str, str], challenger: int = 0) -> bool:
    """The route shows `weight` percent for the canary (and `challenger` for an experiment's
    challenger) and the sessions `kept` (`sessions`), and no gateway reporting on it is behind
    (always, without a route to read)."""
    seen = observations.route
    if seen is None:
        return True
    asked = gateway.weights(observations.owner.name, weight, challenger)
    return (
        seen.weights is not None
        and dict(seen.weights) == asked
        and dict(seen.sessions) == dict(kept)
        and seen.accepted is not False
    )


def headers_verified(observations: Observations, routes: tuple[api.HeaderRoute, ...]) -> bool:
    """The route shows exactly these header routes, and no gateway reporting on it is behind
    (always, without a route to read)."""
    seen = observations.route
    if seen is None:
        return True
    return dict(seen.headers) == gateway.headers_of(routes) and seen.accepted is not False


def headers_waiting(observations: Observations, routes: tuple[api.HeaderRoute, ...]) -> str:
    """Why a setHeaderRoute step holds for the router."""
    seen = observations.route
    assert seen is not None
    if not seen.exists:
        return f"waiting for {seen.kind} {seen.route} to exist"
    if set(seen.headers) == {r.name for r in routes} and seen.accepted is False:
        return f"waiting for the gateway to accept {seen.kind} {seen.route} as changed"
    asked = ", ".join(gateway.header_rule_name(observations.owner.name, r.name) for r in routes) or "none"
    return f"waiting for {seen.kind} {seen.route} to show the header rules asked for ({asked})"


def shadow_verified(observations: Observations, wanted: Shadow | None) -> bool:
    """The route marks requests for exactly this shadow (or none), and no gateway reporting on it is
    behind (always, without a route to read)."""
    seen = observations.route
    if seen is None:
        return True
    return seen.shadow == wanted and seen.accepted is not False


def shadow_waiting(observations: Observations) -> str:
    """Why a shadow step holds for the router."""
    seen = observations.route
    assert seen is not None
    if not seen.exists:
        return f"waiting for {seen.kind} {seen.route} to exist"
    return f"waiting for {seen.kind} {seen.route} to show the shadow asked for, and its gateway to accept it"


def canary_unserved(observations: Observations, canary: str) -> str | None:
    """Why a header route may not send to `<name>-canary` yet, or None: its EndpointSlices must
    list a ready pod of `canary` (a gateway answers 503 for a backend with none)."""
    seen = observations.route
    if seen is None or seen.endpoints is None:
        return None
    backend = f"{observations.owner.name}-canary"
    if any(_pod_of(canary, pod) for pod in seen.endpoints.get(backend, ())):
        return None
    return f"waiting for Service {backend} to list a ready pod of {canary}"


def _sends(seen: RouteObservation, backend: str, canary: str) -> bool:
    """The route may still send requests to `backend`: a weight above 0 as read, a header rule
    (for `<name>-canary`), a session rule, or a gateway that has not accepted the route as last written."""
    return (
        (seen.weights or {}).get(backend, 0) > 0
        or (backend == canary and bool(seen.headers))
        or backend in seen.sessions
        or (seen.accepted is False)
    )


def recheck_at(observations: Observations, now: datetime, draining: bool) -> datetime | None:
    """When to read the route again while a gateway is behind on it, or `<name>-canary` waits for
    one to apply 0 (`draining`); None: neither."""
    seen = observations.route
    behind = seen is not None and seen.accepted is False
    return now + GATEWAY_RECHECK if behind or draining else None


def draining(
    observations: Observations, revision: str, stable: str, backend: str | None = None
) -> str | None:
    """The revision `<name>-canary` (or `backend`: `<name>-challenger`) keeps selecting this pass
    instead of `revision`, or None: the
    one its EndpointSlices list, while the route may still send it requests (`_sends`: a weight
    above 0, a header rule, or a gateway behind). Re-pointed
    then, the Service would hand those requests to a revision with no ready pod listed (503s), so a
    canary replaced mid-rollout loses its weight first and its Service (and pods) only once a
    gateway applied that 0. Moving it to stable needs no wait: stable's pods are ready."""
    seen = observations.route
    if seen is None or seen.endpoints is None or revision == stable:
        return None
    canary = f"{observations.owner.name}-canary"
    backend = backend or canary
    if not _sends(seen, backend, canary):
        return None
    pods = seen.endpoints.get(backend, frozenset())
    listed = _revisions(observations, pods)
    return None if revision in listed or not listed else listed[0]


def challenger_sent(observations: Observations) -> bool:
    """The route may still send requests to `<name>-challenger` (a weight above 0 as read, or a
    gateway behind on it): its Service stays until a gateway applied its removal."""
    seen = observations.route
    if seen is None:
        return False
    backend = gateway.challenger_service(observations.owner.name)
    return _sends(seen, backend, f"{observations.owner.name}-canary")


def still_served(observations: Observations) -> frozenset[str]:
    """The revisions whose pods a backend the route may still send requests to lists (`_sends`):
    their Deployments stay until the EndpointSlices move on. A selector change shows in the slices
    a moment later (longer on a busy control plane), and a gateway answers 503 while a weighted backend lists
    only pods that are going away, as after a promotion whose old stable is deleted too soon."""
    seen = observations.route
    if seen is None or seen.endpoints is None:
        return frozenset()
    canary = f"{observations.owner.name}-canary"
    return frozenset(
        revision
        for backend, pods in seen.endpoints.items()
        if _sends(seen, backend, canary)
        for revision in _revisions(observations, pods)
    )


def _pod_of(revision: str, pod: str) -> bool:
    # A Deployment's pods are named `<deployment>-<replicaset hash>-<suffix>`.
    return pod.startswith(f"{revision}-")


def _revisions(observations: Observations, pods: frozenset[str]) -> list[str]:
    """The observed revisions with a pod among `pods`, sorted."""
    return sorted(r for r in observations.deployments if any(_pod_of(r, pod) for pod in pods))


def unserved(
    observations: Observations,
    weight: int,
    stable: str,
    canary: str,
    pods: int,
    challenger: str | None = None,
    challenger_weight: int = 0,
) -> str | None:
    """Why the route may not move to `weight` yet, or None. A gateway answers 503 for the share it
    sends to a backend whose EndpointSlices list no ready pod, and they list a pod a moment after
    its Deployment counts it available (and still list the old revision's pods a moment after a
    selector changes). So the canary backend gets weight only once its slices list `pods` pods of
    revision `canary`, and the stable backend only while they list one of `stable`; an experiment's
    `challenger` as the canary (`pods` of its own)."""
    seen = observations.route
    if seen is None or seen.endpoints is None:
        return None
    name = observations.owner.name
    needs = {f"{name}-canary": (canary, pods), gateway.challenger_service(name): (challenger or "", pods)}
    for backend, share in gateway.weights(name, weight, challenger_weight).items():
        revision, needed = needs.get(backend, (stable, 1))
        if share == 0:
            continue
        listed = sum(1 for pod in seen.endpoints.get(backend, ()) if _pod_of(revision, pod))
        if listed < needed:
            return (
                f"waiting for Service {backend} to list {needed} ready pod(s) of {revision} "
                f"(it lists {listed})"
            )
    return None


def first_served(observations: Observations, stable: str) -> ConditionValue | None:
    """`TrafficRouted` False (`ENDPOINTS_PENDING`) while a first deploy's route shows all traffic to
    `<name>-stable` but its EndpointSlices list no ready pod of `stable` yet, or None: they list
    one a moment after the Deployment counts it available, and a gateway answers 503 until then."""
    why = unserved(observations, 0, stable, stable, 0)
    return ("False", ENDPOINTS_PENDING, why) if why is not None else None


def waiting(observations: Observations, weight: int, kept: Mapping[str, str], challenger: int = 0) -> str:
    """Why a step holds for the router, naming what each backend gets (and the sessions it keeps)."""
    seen = observations.route
    assert seen is not None
    asked = gateway.weights(observations.owner.name, weight, challenger)
    if not seen.exists:
        return f"waiting for {seen.kind} {seen.route} to exist"
    if seen.weights is None:
        rule = gateway.rule_noun(seen.kind)
        return f"waiting for {seen.kind} {seen.route} to have a {rule} to {', '.join(asked)}"
    routes = gateway.shown(seen.weights)
    if dict(seen.weights) == asked and dict(seen.sessions) != dict(kept):
        name = observations.owner.name
        rules = ", ".join(f"{gateway.session_rule_name(name, b)} -> {r}" for b, r in kept.items())
        return f"waiting for {seen.kind} {seen.route} to show the session rules asked for ({rules or 'none'})"
    if dict(seen.weights) == asked and seen.accepted is False:
        return (
            f"waiting for the gateway to accept {seen.kind} {seen.route} as changed ({routes}): "
            "its status.parents do not show the route's current generation accepted"
        )
    return f"waiting for {seen.kind} {seen.route} to route {gateway.shown(asked)} (it routes {routes})"


def condition(
    spec: api.ModelDeploymentSpec, observations: Observations, weight: int, challenger: int = 0
) -> ConditionValue | None:
    """`TrafficRouted`: does the route show the weights this pass routes? None without a route to read."""
    seen = observations.route
    if seen is None:
        return None
    if not seen.exists:
        return _missing(spec, seen)
    wanted = gateway.weights(observations.owner.name, weight, challenger)
    read = dict(seen.weights) if seen.weights is not None else None
    if read == wanted and seen.accepted is False:
        # TrafficRouted judges the weights; the sessions the route shows are taken as they are.
        return ("False", "GatewayPending", waiting(observations, weight, seen.sessions, challenger))
    return gateway.traffic_condition(seen.route, wanted, read, seen.kind)


def _missing(spec: api.ModelDeploymentSpec, seen: RouteObservation) -> ConditionValue:
    """`TrafficRouted` while the route object does not exist: modelship creates it when the spec says
    where it attaches (parentRefs, a VirtualService's hosts)."""
    ref = spec.traffic.virtual_service
    creatable = bool(ref.hosts) if ref is not None else bool(spec.traffic.parent_refs)
    if not creatable:
        return istio.MISSING if ref is not None else gateway.MISSING
    return (
        "False",
        f"{seen.kind}Missing",
        f"{seen.kind} {seen.route} does not exist yet; modelship creates it",
    )


def actual_weight(spec: api.ModelDeploymentSpec, observations: Observations, out: Outcome) -> int:
    """Percent of requests the canary gets. With a route: its backend's share of the managed rule as
    read when the pass began (the verified weight). With the `service` router: its share of the
    ready pods `<name>` selects once this pass's writes are applied (only stable at weight 0; a
    Deployment scaled down keeps at most its new replicas)."""
    seen = observations.route
    if seen is not None:
        if not seen.weights:
            return 0
        canary = seen.weights.get(f"{observations.owner.name}-canary", 0)
        return traffic.share(sum(seen.weights.values()) - canary, canary)
    if not traffic.router_for(spec).shares_one_service:
        return out.weight or 0  # a router with nothing to read back: trust what was set
    if not out.weight or out.canary is None:
        return 0
    stable = _ready(observations.deployments.get(out.stable), out.stable_replicas)
    return traffic.share(stable, _ready(observations.deployments.get(out.canary), out.canary_replicas))


def _ready(observed: ObservedDeployment | None, replicas: int) -> int:
    return min(observed.available_replicas, replicas) if observed is not None else 0


def reach(spec: api.ModelDeploymentSpec, status: api.ModelDeploymentStatus) -> dict[str, ConditionValue]:
    """`WeightUnreachable`: True while `spec.replicas` pods cannot serve some setWeight step within
    `traffic.TOLERANCE` points with the `service` router (a warning, not a refusal: replicas change,
    by hand or by an autoscaler); False once it no longer applies; absent if it never did."""
    far = traffic.unreachable(spec)
    if far:
        # The first few only: a condition's message is bounded (1024), a spec may have 32 steps.
        steps = ", ".join(
            f"spec.strategy.canary.steps[{i}].setWeight {w} is served as {served}%"
            for i, w, served in far[:3]
        ) + (f" (and {len(far) - 3} more)" if len(far) > 3 else "")
        return {
            "WeightUnreachable": (
                "True",
                "TooFewReplicas",
                f"router service splits traffic by ready pods, and with spec.replicas {spec.replicas}: "
                f"{steps}; use more replicas, or router gatewayAPI for exact weights",
            )
        }
    if has(status, "WeightUnreachable"):
        return {
            "WeightUnreachable": (
                "False",
                "WeightsReachable",
                f"every setWeight step is served within {traffic.TOLERANCE} points of its weight",
            )
        }
    return {}


def reach_events(old: api.ModelDeploymentStatus, new: list[api.Condition]) -> list[Event]:
    """A Warning when `WeightUnreachable` turns True."""
    before = next((c.status for c in old.conditions or [] if c.type == "WeightUnreachable"), None)
    return [
        Event("Warning", c.type, c.message)
        for c in new
        if c.type == "WeightUnreachable" and c.status == "True" and before != "True"
    ]
