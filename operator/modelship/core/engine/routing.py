"""What the router read back, judged: is the weight a step asked for really in effect?

A setWeight step (and a blue/green switch) completes only once the route shows its weights,
as Argo Rollouts does; until then the step holds and `TrafficRouted` says which backend has
which weight. The `service` router has no route to read: its weight is its ready pods, which
the steps already wait for.
"""

from __future__ import annotations

from modelship import api
from modelship.core import gateway
from modelship.core.engine.model import ConditionValue, Observations


def verified(observations: Observations, weight: int) -> bool:
    """The route shows `weight` percent for the canary (always, without a route to read)."""
    seen = observations.route
    if seen is None:
        return True
    return seen.weights is not None and dict(seen.weights) == gateway.weights(observations.owner.name, weight)


def waiting(observations: Observations, weight: int) -> str:
    """Why a step holds for the router, naming what each backend gets."""
    seen = observations.route
    assert seen is not None
    asked = gateway.weights(observations.owner.name, weight)
    if not seen.exists:
        return f"waiting for HTTPRoute {seen.route} to exist"
    if seen.weights is None:
        return f"waiting for HTTPRoute {seen.route} to have a rule with a backendRef to {', '.join(asked)}"
    routes = gateway.shown(seen.weights)
    return f"waiting for HTTPRoute {seen.route} to route {gateway.shown(asked)} (it routes {routes})"


def condition(
    spec: api.ModelDeploymentSpec, observations: Observations, weight: int
) -> ConditionValue | None:
    """`TrafficRouted`: does the route show the weight this pass routes? None without a route to read."""
    seen = observations.route
    if seen is None:
        return None
    if not seen.exists:
        if not spec.traffic.parent_refs:
            return gateway.MISSING
        return (
            "False",
            "HTTPRouteMissing",
            f"HTTPRoute {seen.route} does not exist yet; modelship creates it",
        )
    wanted = gateway.weights(observations.owner.name, weight)
    read = dict(seen.weights) if seen.weights is not None else None
    return gateway.traffic_condition(seen.route, wanted, read)
