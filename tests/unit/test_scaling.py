"""Scaling a ModelDeployment through its `scale` subresource (an HPA, `kubectl scale`) while a
rollout runs: both revisions follow `spec.replicas` at the current weight, the rollout carries on
where it was, and what the subresource reports (status.replicas, status.selector)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from modelship import api
from modelship.core import control, revisions, traffic

from .enginesim import World, command, spec
from .test_canary import NEW_IMAGE, name_of, replicas, stable_world, step

pytestmark = pytest.mark.unit

MODEL_SELECTOR = "modelship.io/model=fraud"


def canary(router: str, n: int, weight: int, image: str | None = None) -> api.ModelDeploymentSpec:
    route = {"router": "gatewayAPI", "httpRoute": "fraud"} if router == "gatewayAPI" else {"router": router}
    fields: dict[str, Any] = {
        "replicas": n,
        "strategy": {"canary": {"steps": [{"setWeight": weight}, {"pause": {}}, {"setWeight": 100}]}},
        "traffic": route,
    }
    return spec(**fields, **({"image": image} if image else {}))


def scaled(s: api.ModelDeploymentSpec, n: int) -> api.ModelDeploymentSpec:
    """What the scale subresource does to the spec: `spec.replicas`, nothing else."""
    return s.model_copy(update={"replicas": n})


def settle_pass(world: World, s: api.ModelDeploymentSpec) -> list[str]:
    """Pods come up, Services list them, one pass; the pass's event reasons."""
    world.settle()
    world.list_endpoints()
    return [e.reason for e in world.reconcile(s).events]


def promote(world: World, s: api.ModelDeploymentSpec) -> None:
    """`modelship promote`, then passes until the rollout is over (a few at most)."""
    s, world.status = command("promote", s, world.status)
    for _ in range(6):
        settle_pass(world, s)
        if world.status.rollout is None:
            break


def at_pause(router: str, n: int, weight: int) -> tuple[World, api.ModelDeploymentSpec]:
    """A canary at `weight`, held by its `pause: {}` step."""
    world = stable_world(canary(router, n, weight))
    world.list_endpoints()
    new = canary(router, n, weight, NEW_IMAGE)
    for _ in range(6):
        settle_pass(world, new)
        if world.status.canary is not None and world.status.canary.step == 1:
            break
    assert world.status.canary is not None and (world.status.canary.step, world.status.canary.weight) == (
        1,
        weight,
    ), world.status.canary
    return world, new


def expected(router: str, n: int, weight: int) -> tuple[int, int]:
    """(stable, canary) pods for `n` replicas at `weight`: proportional as the router can be."""
    if router == "service":
        return traffic.split(n, weight)
    return n, max(traffic.canary_pods_for(n, weight), 1)


@settings(max_examples=120, deadline=None)
@given(
    router=st.sampled_from(["service", "gatewayAPI"]),
    before=st.integers(1, 12),
    after=st.integers(1, 30),
    weight=st.integers(1, 99),
)
def test_scaling_mid_canary_scales_both_revisions_at_the_weight_and_keeps_the_step(
    router: str, before: int, after: int, weight: int
) -> None:
    world, new = at_pause(router, before, weight)
    old_revision = world.status.stable_revision
    walking = world.status.canary
    assert walking is not None
    hpa = scaled(new, after)
    assert name_of(hpa) == walking.revision  # replicas are not part of the revision

    reasons = settle_pass(world, hpa) + settle_pass(world, hpa)

    assert world.status.canary == walking.model_copy(
        update={"actual_weight": world.status.canary.actual_weight}
    )
    assert world.status.stable_revision == old_revision
    assert not {"RolloutStarted", "CanaryReplaced", "RolledBack", "WeightChanged"} & set(reasons), reasons
    stable, canary_pods = expected(router, after, weight)
    assert replicas(world) == {old_revision: stable, walking.revision: canary_pods}
    if router == "service":
        # The share of traffic the pods give is the closest `after` replicas allow.
        assert world.status.canary.actual_weight == traffic.closest_share(after, weight)
    assert world.status.replicas == stable + canary_pods
    assert world.status.selector == MODEL_SELECTOR


@pytest.mark.parametrize("router", ["service", "gatewayAPI"])
def test_after_promotion_the_new_stable_has_the_scaled_replicas(router: str) -> None:
    world, new = at_pause(router, 4, 25)
    hpa = scaled(new, 10)
    settle_pass(world, hpa)
    promote(world, hpa)
    assert world.status.stable_revision == name_of(new)
    assert replicas(world)[name_of(new)] == 10
    scaled_down = world.status.scale_down_revision
    assert scaled_down is not None  # the old stable, kept for scaleDownDelay: it counts while it runs
    assert world.status.replicas == 10 + world.deployments[scaled_down].replicas
    world.now = world.status.scale_down_at or world.now
    settle_pass(world, hpa)
    assert replicas(world) == {name_of(new): 10}
    settle_pass(world, hpa)  # the status reports what the pass observed: the next one sees it gone
    assert (world.status.replicas, world.status.selector) == (10, MODEL_SELECTOR)


def bluegreen(image: str | None = None, **blue_green: Any) -> api.ModelDeploymentSpec:
    strategy = {"blueGreen": {"autoPromote": False, "scaleDownDelay": "30s", **blue_green}}
    return spec(replicas=4, strategy=strategy, **({"image": image} if image else {}))


@pytest.mark.parametrize(("preview_replicas", "preview_after"), [(None, 7), (2, 2)])
def test_blue_green_preview_follows_replicas_unless_preview_replicas_is_set(
    preview_replicas: int | None, preview_after: int
) -> None:
    extra: dict[str, Any] = {"previewReplicas": preview_replicas} if preview_replicas else {}
    old = bluegreen(**extra)
    world = stable_world(old)
    new = bluegreen(NEW_IMAGE, **extra)
    step(world, new)
    preview = world.status.blue_green
    assert preview is not None and preview.phase == "Preview"

    hpa = scaled(new, 7)
    reasons = settle_pass(world, hpa) + settle_pass(world, hpa)
    assert replicas(world) == {name_of(old): 7, name_of(new): preview_after}
    assert world.status.blue_green == preview  # still the same preview, its ready time kept
    assert "RolloutStarted" not in reasons
    # The autoscaler sees the serving colour only: the preview takes no traffic.
    assert world.status.selector == f"{MODEL_SELECTOR},modelship.io/revision={name_of(old)}"
    assert world.status.replicas == 7

    promote(world, hpa)
    assert world.status.stable_revision == name_of(new)
    assert replicas(world)[name_of(new)] == 7
    assert world.status.selector == f"{MODEL_SELECTOR},modelship.io/revision={name_of(new)}"
    assert world.status.replicas == 7


def test_canary_status_counts_every_pod_of_the_model_as_the_deployments_report() -> None:
    world, _ = at_pause("gatewayAPI", 4, 25)
    # Pods that exist, not pods asked for: one of the canary's is not created yet.
    canary_name = next(n for n in world.deployments if n != world.status.stable_revision)
    world.deployments[canary_name] = dataclasses.replace(world.deployments[canary_name], replicas=0)
    decision = world.decide(canary("gatewayAPI", 4, 25, NEW_IMAGE))
    assert decision.status.replicas == 4
    assert decision.status.selector == MODEL_SELECTOR


def test_no_command_of_the_operator_writes_spec_replicas() -> None:
    """The HPA owns spec.replicas: the engine writes only status and children, and the kubectl
    plugin's spec patches (resume and undo with --apply) leave replicas alone."""
    world, new = at_pause("service", 4, 25)
    decision = world.decide(new)
    assert {m["kind"] for m in decision.apply} <= {"Deployment", "Service"}
    for verb in control.VERBS:
        try:
            patch = control.patch_for(verb, new, world.status, apply=True)
        except control.NotApplicable:
            continue
        if patch.target == "spec":
            assert "replicas" not in patch.body, (verb, patch.body)
    undo = control.patch_for("undo", new, world.status, apply=True)
    assert undo.target == "spec" and set(undo.body) >= {"image"}
    assert revisions.template_of(scaled(new, 9)) == revisions.template_of(new)


def test_the_hpa_in_docs_is_the_example_and_targets_the_basic_example() -> None:
    root = Path(__file__).resolve().parents[2]
    example = yaml.safe_load((root / "examples" / "autoscaling" / "hpa.yaml").read_text())
    blocks = re.findall(r"```yaml\n(.*?)```", (root / "docs" / "scaling.md").read_text(), re.S)
    assert yaml.safe_load(blocks[0]) == example
    target = example["spec"]["scaleTargetRef"]
    basic = yaml.safe_load((root / "examples" / "basic.yaml").read_text())
    assert (target["apiVersion"], target["kind"]) == (api.API_VERSION, api.KIND)
    assert target["name"] == basic["metadata"]["name"]
