"""The canary's real share of traffic: the service router's replica choice, the share it reports
(`status.rollout.canary.actualWeight`), the `WeightUnreachable` warning, and the gatewayAPI route's
read-back weight."""

from __future__ import annotations

from datetime import timedelta
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship import api, crd, metrics, plugin
from modelship.core import traffic

from .enginesim import command
from .test_canary import NEW_IMAGE, canary_spec, condition, name_of, replicas, stable_world, step

pytestmark = pytest.mark.unit


def rounded(stable: int, canary: int) -> int:
    """100 * canary / (stable + canary), rounded half up, computed exactly."""
    if canary == 0:
        return 0
    exact = Fraction(100 * canary, stable + canary)
    return int(exact + Fraction(1, 2))  # int() floors a non-negative Fraction


def feasible(replicas_: int, weight: int) -> list[tuple[int, int]]:
    """Every (stable, canary) the service router may run for `weight` with `replicas_` pods."""
    if weight <= 0:
        return [(replicas_, 0)]
    if weight >= 100:
        return [(0, replicas_)]
    pods = max(replicas_, 2)  # one pod on each side, even with 1 replica
    return [(pods - c, c) for c in range(1, pods)]


def check_split(replicas_: int, weight: int) -> None:
    stable, canary = traffic.split(replicas_, weight)
    assert (stable, canary) in feasible(replicas_, weight)
    actual = traffic.share(stable, canary)
    assert actual == rounded(stable, canary)  # the reported share is exact for the pods chosen
    best = min(abs(rounded(s, c) - weight) for s, c in feasible(replicas_, weight))
    assert abs(actual - weight) == best, (replicas_, weight, stable, canary)
    assert traffic.closest_share(replicas_, weight) == actual


@pytest.mark.parametrize("replicas_", range(1, 21))
def test_split_is_the_closest_share_for_every_weight(replicas_: int) -> None:
    for weight in range(101):
        check_split(replicas_, weight)


@given(st.integers(1, 1000), st.integers(0, 100))
def test_split_is_the_closest_share_for_any_replica_count(replicas_: int, weight: int) -> None:
    check_split(replicas_, weight)


@given(st.integers(0, 2000), st.integers(0, 2000))
def test_share_is_the_rounded_percentage_of_ready_pods(stable: int, canary: int) -> None:
    assert traffic.share(stable, canary) == rounded(stable, canary)
    assert 0 <= traffic.share(stable, canary) <= 100


@pytest.mark.parametrize(
    ("stable", "canary", "expected"),
    [
        (1, 1, 50),
        (3, 1, 25),
        (7, 1, 13),
        (2, 1, 33),
        (1, 2, 67),
        (199, 1, 1),
        (0, 3, 100),
        (5, 0, 0),
        (0, 0, 0),
    ],
)
def test_share_examples(stable: int, canary: int, expected: int) -> None:
    assert traffic.share(stable, canary) == expected


def steps_spec(*weights: int, replicas_: int = 4, router: str = "service", image: str | None = None) -> Any:
    steps: list[dict[str, Any]] = []
    for w in weights:
        steps += [{"setWeight": w}, {"pause": {}}]
    return canary_spec(image, router=router, replicas=replicas_, strategy={"canary": {"steps": steps}})


def test_unreachable_names_the_steps_the_replicas_cannot_approach() -> None:
    assert traffic.unreachable(steps_spec(10, 50, replicas_=1)) == [(0, 10, 50)]
    assert traffic.unreachable(steps_spec(20, 50, replicas_=4)) == []  # 25% is within 5 points
    assert traffic.unreachable(steps_spec(10, 50, replicas_=4)) == [(0, 10, 25)]
    assert traffic.unreachable(steps_spec(10, 50, replicas_=10)) == []
    assert traffic.unreachable(steps_spec(10, replicas_=1, router="gatewayAPI")) == []
    assert traffic.unreachable(steps_spec(10, replicas_=0)) == []


def test_one_replica_at_ten_percent_reports_the_fifty_percent_it_really_serves() -> None:
    old = steps_spec(10, replicas_=1)
    world = stable_world(old)
    assert condition(world.status, "WeightUnreachable").status == "True"
    warnings = [e for e in world.events if e.reason == "WeightUnreachable"]
    assert len(warnings) == 1 and warnings[0].type == "Warning"
    assert "spec.strategy.canary.steps[0].setWeight 10 is served as 50%" in warnings[0].message
    new = steps_spec(10, replicas_=1, image=NEW_IMAGE)

    world.reconcile(new)  # the canary's pod is not ready yet: `<name>` selects only stable
    assert world.status.canary is not None
    assert (world.status.canary.weight, world.status.canary.actual_weight) == (0, 0)
    world.settle()
    world.reconcile(new)
    assert (world.status.canary.weight, world.status.canary.actual_weight) == (10, 50)
    assert replicas(world) == {name_of(old): 1, name_of(new): 1}
    assert world.ready_endpoints("fraud") == 2  # one pod each behind `<name>`: 50% really
    assert world.status.new_revision_actual_weight == 50 and world.status.new_revision_weight == 10
    assert [e.reason for e in world.events].count("WeightUnreachable") == 1  # warned once

    fixed = steps_spec(10, replicas_=10, image=NEW_IMAGE)
    world.reconcile(fixed)
    unreachable = condition(world.status, "WeightUnreachable")
    assert (unreachable.status, unreachable.reason) == ("False", "WeightsReachable")


def test_actual_weight_follows_the_ready_pods_behind_the_shared_service() -> None:
    old = steps_spec(20, 50)
    world = stable_world(old)
    assert not any(c.type == "WeightUnreachable" for c in world.status.conditions or [])
    new = steps_spec(20, 50, image=NEW_IMAGE)
    step(world, new)
    canary = world.status.canary
    assert canary is not None and (canary.weight, canary.actual_weight) == (20, 25)  # 1 of 4 pods
    new, world.status = command("promote", new, world.status)
    world.reconcile(new)  # setWeight 50: the canary scales up first, stable still at 3
    assert replicas(world) == {name_of(old): 3, name_of(new): 2}
    assert world.status.canary is not None and world.status.canary.actual_weight == 25
    world.settle()
    world.reconcile(new)  # 2 of 4 once stable scales down; its third pod no longer counts
    assert world.status.canary is not None
    assert (world.status.canary.weight, world.status.canary.actual_weight) == (50, 50)
    world.settle()
    world.reconcile(new)
    assert world.status.canary.actual_weight == 50
    assert world.ready_endpoints("fraud") == 4


def test_gateway_router_reports_the_weight_the_route_shows() -> None:
    old = steps_spec(20, router="gatewayAPI")
    world = stable_world(old)
    new = steps_spec(20, router="gatewayAPI", image=NEW_IMAGE)
    world.route_stuck = True  # someone keeps all traffic on stable
    step(world, new)
    canary = world.status.canary
    assert canary is not None and (canary.weight, canary.actual_weight) == (20, 0)
    world.route = {"fraud-stable": 3, "fraud-canary": 1}  # relative weights: 25%
    world.reconcile(new)
    assert world.status.canary is not None and world.status.canary.actual_weight == 25
    world.route_stuck = False
    world.reconcile(new)
    canary = world.status.canary
    assert canary is not None and (canary.weight, canary.actual_weight, canary.step) == (20, 20, 1)
    assert not any(c.type == "WeightUnreachable" for c in world.status.conditions or [])


def test_metrics_report_the_real_share_and_the_requested_weight() -> None:
    ns, name = "actual-weight-test", "fraud"
    status = api.ModelDeploymentStatus.model_validate(
        {"phase": "Paused", "rollout": {"canary": {"revision": "m-b", "weight": 10, "actualWeight": 50}}}
    )
    metrics.record_status(ns, name, status)
    assert metrics.REGISTRY.get_sample_value("modelship_canary_weight", {"namespace": ns, "name": name}) == 50
    requested = metrics.REGISTRY.get_sample_value(
        "modelship_canary_requested_weight", {"namespace": ns, "name": name}
    )
    assert requested == 10
    metrics.forget(ns, name)
    assert (
        metrics.REGISTRY.get_sample_value(
            "modelship_canary_requested_weight", {"namespace": ns, "name": name}
        )
        is None
    )


def test_plugin_shows_the_real_share_and_what_the_steps_ask_for() -> None:
    s = steps_spec(10, replicas_=1)
    obj = {
        "metadata": {"name": "fraud", "namespace": "ml"},
        "spec": api.dump(s),
        "status": {
            "rollout": {"canary": {"revision": "fraud-b", "weight": 10, "actualWeight": 50, "step": 1}}
        },
    }
    assert "Weight:     50% canary / 50% stable (steps ask for 10%)" in plugin.render(obj, [])


def test_printer_column_weight_is_the_real_share_and_wide_adds_the_requested_one() -> None:
    columns = {c["name"]: c for c in crd.PRINTER_COLUMNS}
    assert columns["Weight"]["jsonPath"] == ".status.rollout.canary.actualWeight"
    assert columns["Requested"] == {
        "name": "Requested",
        "type": "integer",
        "jsonPath": ".status.rollout.canary.weight",
        "priority": 1,
    }


def test_set_canary_scale_with_the_service_router_is_refused_naming_the_field() -> None:
    spec_schema = crd.generate()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rule = next(r for r in spec_schema["x-kubernetes-validations"] if "setCanaryScale" in r["rule"])
    assert rule["fieldPath"] == ".strategy.canary.steps"
    assert rule["message"].startswith("spec.strategy.canary.steps[].setCanaryScale needs")
    # The API server evaluates it: tests/integration/test_admission.py.


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.lists(st.integers(1, 99), min_size=1, max_size=3))
def test_the_reported_share_is_what_the_shared_service_serves_at_every_pause(
    replicas_: int, weights: list[int]
) -> None:
    old = steps_spec(*weights, replicas_=replicas_)
    world = stable_world(old)
    new = steps_spec(*weights, replicas_=replicas_, image=NEW_IMAGE)
    for index, weight in enumerate(weights):
        for _ in range(3):  # up to the pause after this step, every pod ready
            step(world, new)
        canary = world.status.canary
        assert canary is not None and (canary.step, canary.weight) == (2 * index + 1, weight)
        behind = world.ready_endpoints("fraud")
        from_canary = world.ready_endpoints("fraud-canary")
        assert canary.actual_weight == traffic.share(behind - from_canary, from_canary)
        assert (behind - from_canary, from_canary) == traffic.split(replicas_, weight)
        new, world.status = command("promote", new, world.status)


def test_the_warning_stays_within_a_condition_message_for_32_coarse_steps() -> None:
    weights = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    world = stable_world(steps_spec(*weights, replicas_=1))
    warning = condition(world.status, "WeightUnreachable")
    assert warning.status == "True" and "(and 13 more)" in warning.message
    assert len(warning.message) <= 1024


def test_a_weight_step_waits_for_the_gateway_to_accept_the_route_as_written() -> None:
    """A route object shows what was asked; a gateway that is down (or lagging) still routes the
    old weights, so the step is done only once the gateway reports the route's new generation."""
    old = steps_spec(20, 50, router="gatewayAPI")
    world = stable_world(old)
    new = steps_spec(20, 50, router="gatewayAPI", image=NEW_IMAGE)
    world.gateway_accepted = False  # the gateway is down from here on
    step(world, new)
    canary = world.status.canary
    assert world.route == {"fraud-stable": 80, "fraud-canary": 20}  # written...
    assert canary is not None and (canary.weight, canary.step) == (20, 0)  # ...but not done
    assert condition(world.status, "TrafficRouted").reason == "GatewayPending"
    decision = world.decide(new)
    assert decision.wake_at is not None and decision.wake_at - world.now <= timedelta(seconds=1)
    world.gateway_accepted = True  # back, and it reports the route as written
    world.reconcile(new)
    canary = world.status.canary
    assert canary is not None and (canary.weight, canary.step) == (20, 1)
    assert condition(world.status, "TrafficRouted").reason == "WeightsSet"
