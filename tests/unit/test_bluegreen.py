"""engine.decide: blue/green rollouts (preview, promotion by selector swap, undo within the delay)."""

from __future__ import annotations

from typing import Any

import pytest

from modelship import api

from .enginesim import World, command, spec
from .test_canary import NEW_IMAGE, condition, name_of, replicas, stable_world, step

pytestmark = pytest.mark.unit


def bg_spec(image: str | None = None, **blue_green: Any) -> api.ModelDeploymentSpec:
    fields: dict[str, Any] = {
        "replicas": 4,
        "strategy": {
            "blueGreen": {"autoPromote": False, "previewReplicas": 1, "scaleDownDelay": "30s", **blue_green}
        },
    }
    if image:
        fields["image"] = image
    return spec(**fields)


def selectors(world: World, s: api.ModelDeploymentSpec) -> dict[str, str]:
    return {
        m["metadata"]["name"]: m["spec"]["selector"].get("modelship.io/revision", "*")
        for m in world.decide(s).apply
        if m["kind"] == "Service"
    }


def test_preview_comes_up_beside_stable_and_waits_for_promote() -> None:
    old = bg_spec()
    world = stable_world(old)
    new = bg_spec(NEW_IMAGE)
    step(world, new)
    stable, preview = name_of(old), name_of(new)
    assert replicas(world) == {stable: 4, preview: 1}
    assert world.status.phase == "Paused"
    assert condition(world.status, "Paused").reason == "PreviewPause"
    assert world.status.blue_green is not None
    assert (world.status.blue_green.revision, world.status.blue_green.phase) == (preview, "Preview")
    assert selectors(world, new) == {
        "fraud": stable,
        "fraud-stable": stable,
        "fraud-canary": preview,
        "fraud-preview": preview,
    }
    for _ in range(3):
        world.reconcile(new)
    assert world.status.stable_revision == stable


def test_promote_scales_the_preview_up_then_swaps_the_active_selector_in_one_move() -> None:
    old = bg_spec()
    world = stable_world(old)
    new = bg_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("promote", new, world.status)
    world.reconcile(new)
    assert replicas(world) == {name_of(old): 4, name_of(new): 4}
    assert selectors(world, new)["fraud"] == name_of(old)  # not before the new pods are all up
    world.settle()
    decision = world.reconcile(new)
    assert decision.status.stable_revision == name_of(new)
    assert decision.status.previous_template is not None
    assert selectors(world, new)["fraud"] == name_of(new)
    assert "Promoted" in [e.reason for e in decision.events]
    assert replicas(world) == {name_of(old): 4, name_of(new): 4}  # old kept for scaleDownDelay


def test_gateway_router_swaps_only_once_the_new_colours_service_lists_all_its_pods() -> None:
    route = {"traffic": {"router": "gatewayAPI", "httpRoute": "fraud"}}
    old = bg_spec()
    old = spec(**{**api.dump(old), **route})
    world = stable_world(old)
    new = spec(**{**api.dump(bg_spec(NEW_IMAGE)), **route})
    step(world, new)
    new, world.status = command("promote", new, world.status)
    world.reconcile(new)
    world.settle()
    world.list_endpoints()  # the slices list the preview's first pod, not the three just added
    world.slices = {**world.slices, "fraud-canary": frozenset(sorted(world.slices["fraud-canary"])[:1])}
    world.reconcile(new)
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    waiting = condition(world.status, "Progressing").message
    assert f"Service fraud-canary to list 4 ready pod(s) of {name_of(new)} (it lists 1)" in waiting, waiting
    assert world.status.stable_revision == name_of(old)
    world.list_endpoints()
    world.reconcile(new)
    assert world.status.stable_revision == name_of(new)
    assert selectors(world, new)["fraud-stable"] == name_of(new)  # the swap, behind the same route


def test_undo_within_the_scale_down_delay_swaps_back_without_new_pods() -> None:
    old = bg_spec()
    world = stable_world(old)
    new = bg_spec(NEW_IMAGE)
    step(world, new)
    new, world.status = command("promote", new, world.status)
    step(world, new)
    assert world.status.stable_revision == name_of(new)
    undone, world.status = command("undo", new, world.status, apply=True)
    assert name_of(undone) == name_of(old)
    decision = world.reconcile(undone)
    assert decision.status.stable_revision == name_of(old)  # at once: its pods were still up
    assert decision.status.rolling is None
    assert replicas(world) == {name_of(old): 4, name_of(new): 4}
    assert selectors(world, undone)["fraud"] == name_of(old)


def test_auto_promote_switches_after_the_delay() -> None:
    old = bg_spec(autoPromote=True, autoPromotionDelay="20s")
    world = stable_world(old)
    new = bg_spec(NEW_IMAGE, autoPromote=True, autoPromotionDelay="20s")
    step(world, new)
    ready_at = world.status.blue_green.ready_time if world.status.blue_green else None
    assert ready_at is not None and world.status.phase == "Paused"
    assert world.decide(new).wake_at == ready_at + api.parse_duration("20s")
    world.now = ready_at + api.parse_duration("20s")
    step(world, new)
    assert world.status.stable_revision == name_of(new)


def test_pausing_after_the_switch_keeps_the_new_colour_serving_at_full_size() -> None:
    analysis = {"interval": "5s", "metrics": [{"name": "errors", "template": "error-rate", "max": 0.05}]}
    strategy = {"blueGreen": {"autoPromote": True, "previewReplicas": 1, "postPromotionAnalysis": True}}
    old = spec(replicas=4, strategy=strategy, analysis=analysis)
    world = stable_world(old)
    new = spec(replicas=4, strategy=strategy, analysis=analysis, image=NEW_IMAGE)
    for _ in range(4):
        world.reconcile(new)
        world.settle()
    assert world.status.blue_green is not None
    assert world.status.blue_green.phase == "Switched" and selectors(world, new)["fraud"] == name_of(new)
    paused = new.model_copy(update={"paused": True})
    world.reconcile(paused)
    world.settle()
    assert world.status.blue_green is not None and world.status.blue_green.phase == "Switched"
    assert selectors(world, paused)["fraud"] == name_of(new)
    assert replicas(world)[name_of(new)] == 4  # not back to previewReplicas while it serves
