"""Traffic routers, pure: how a canary weight becomes replica counts and Service selectors.

One small interface, `Router`, with one implementation per `spec.traffic.router`:

- `service` (needs no mesh): the `<name>` Service selects every pod of the model
  while a canary runs, so the canary's share of traffic is its share of ready pods
  (`share`). `split` picks the canary pods whose share is closest to the weight, with
  at least one pod on each side when 0 < w < 100 (as Argo Rollouts does without
  traffic routing); `unreachable` names the steps the replicas cannot approach.
  `setCanaryScale` is refused at admission with this router: replicas *are* the weight.
- `gatewayAPI` and `istio`: the weight is exact (HTTPRoute backendRefs, VirtualService
  destination weights); the stable revision keeps all its replicas and the canary runs as
  many as its weight needs (or as `setCanaryScale` says). `route_of` names the object each
  writes its weights into.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelship import api

# A setWeight step whose closest share is further than this from its weight is flagged
# (`WeightUnreachable`): 20% served as 25% with 4 replicas is fine, 10% served as 50% is not.
TOLERANCE = 5


def share(stable: int, canary: int) -> int:
    """Percent of requests (rounded half up) the canary gets when one Service selects `stable` and
    `canary` ready pods; 0 without a ready canary pod."""
    total = stable + canary
    if canary <= 0:
        return 0
    return (200 * canary + total) // (2 * total)


def split(replicas: int, weight: int) -> tuple[int, int]:
    """(stable, canary) pods whose `share` is closest to `weight` percent, `replicas` in all; when
    0 < weight < 100, at least one pod on each side (so 1 replica runs 1 + 1). A tie goes to fewer
    canary pods: less traffic on the unproven revision."""
    if replicas <= 0:
        return 0, 0
    if weight <= 0:
        return replicas, 0
    if weight >= 100:
        return 0, replicas
    pods = max(replicas, 2)
    # share() only grows with the canary's pods, so the best count is next to pods * weight / 100.
    below = min(max(pods * weight // 100, 1), pods - 1)
    above = min(below + 1, pods - 1)
    canary = min((below, above), key=lambda c: abs(share(pods - c, c) - weight))
    return pods - canary, canary


def closest_share(replicas: int, weight: int) -> int:
    """The share of traffic the `service` router gives a canary at `weight` with `replicas` pods."""
    return share(*split(replicas, weight))


def unreachable(spec: api.ModelDeploymentSpec) -> list[tuple[int, int, int]]:
    """(step index, weight, share served) of each setWeight step the `service` router cannot serve
    within TOLERANCE points with `spec.replicas` pods (none with another router or strategy)."""
    if spec.traffic.router != "service" or spec.strategy.canary is None or spec.replicas <= 0:
        return []
    out = []
    for index, step in enumerate(spec.strategy.canary.steps):
        if step.set_weight is not None:
            served = closest_share(spec.replicas, step.set_weight)
            if abs(served - step.set_weight) > TOLERANCE:
                out.append((index, step.set_weight, served))
    return out


def canary_pods_for(replicas: int, weight: int) -> int:
    """Pods a canary needs to serve `weight` percent when the router sets weights exactly."""
    return min(math.ceil(replicas * weight / 100), replicas)


@dataclass(frozen=True)
class Replicas:
    stable: int
    canary: int


@dataclass(frozen=True)
class Router:
    kind: str  # spec.traffic.router

    @property
    def shares_one_service(self) -> bool:
        """The `<name>` Service selects both revisions while a canary runs."""
        return self.kind == "service"

    def replicas(
        self, total: int, routed: int, wanted: int, scale: api.CanaryScale | None, promoting: bool
    ) -> Replicas:
        """Replicas while a canary runs: `routed` is the weight in effect, `wanted` the one the
        current step moves to (the canary scales up first; stable scales down after)."""
        if total <= 0:
            return Replicas(0, 0)
        if promoting:
            # The whole canary comes up before it takes over; stable keeps serving meanwhile.
            return Replicas(split(total, routed)[0] if self.shares_one_service else total, total)
        if self.shares_one_service:
            canary = max(split(total, routed)[1], split(total, wanted)[1], 1)
            return Replicas(split(total, routed)[0], canary)
        if scale is not None and scale.replicas is not None:
            canary = scale.replicas
        elif scale is not None and scale.weight is not None:
            canary = canary_pods_for(total, scale.weight)
        else:
            canary = canary_pods_for(total, max(routed, wanted))
        # Never fewer canary pods than the traffic it carries needs, and always one to watch; a
        # step that moves the weight needs them before it moves it (else the pass after the move
        # would size the canary up under traffic already sent to it).
        return Replicas(total, max(canary, canary_pods_for(total, max(routed, wanted)), 1))


def router_for(spec: api.ModelDeploymentSpec) -> Router:
    return Router(spec.traffic.router)


# The object each router with weights to read back keeps them in.
ROUTE_KINDS = {"gatewayAPI": "HTTPRoute", "istio": "VirtualService"}


def route_of(spec: api.ModelDeploymentSpec) -> tuple[str, str] | None:
    """(kind, name) of the object the router writes weights into and reads them back from; None when
    it has none (the `service` router)."""
    t = spec.traffic
    name = t.http_route if t.router == "gatewayAPI" else t.virtual_service.name if t.virtual_service else None
    return (ROUTE_KINDS[t.router], name) if t.router in ROUTE_KINDS and name else None
