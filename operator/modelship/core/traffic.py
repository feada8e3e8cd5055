"""Traffic routers, pure: how a canary weight becomes replica counts and Service selectors.

One small interface, `Router`, with one implementation per `spec.traffic.router`:

- `service` (needs no mesh): the `<name>` Service selects every pod of the model
  while a canary runs, so the canary's share of traffic is its share of ready pods.
  The weight is approximated by `split`: canary pods = round-half-up(replicas * w /
  100), with at least one pod on each side when 0 < w < 100 (as Argo Rollouts does
  without traffic routing). `setCanaryScale` has no effect: replicas *are* the weight.
- `gatewayAPI`: the weight is exact (HTTPRoute backendRefs); the stable revision keeps
  all its replicas and the canary runs as many as its weight needs (or as
  `setCanaryScale` says).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from modelship import api


def split(replicas: int, weight: int) -> tuple[int, int]:
    """(stable, canary) pods approximating `weight` percent for the canary."""
    if replicas <= 0:
        return 0, 0
    if weight <= 0:
        return replicas, 0
    if weight >= 100:
        return 0, replicas
    canary = min(max(math.floor(replicas * weight / 100 + 0.5), 1), max(replicas - 1, 1))
    return max(replicas - canary, 1), canary


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
        # Never fewer canary pods than the traffic it carries needs, and always one to watch.
        return Replicas(total, max(canary, canary_pods_for(total, routed), 1))


def router_for(spec: api.ModelDeploymentSpec) -> Router:
    return Router(spec.traffic.router)
