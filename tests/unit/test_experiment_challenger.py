"""An experiment between two candidates: the spec's candidate against `experiment.challenger`, a
third revision that runs only while the step runs. The route splits three ways, the statistical
test compares the candidate with the challenger, and the challenger leaves the route before its
Service and pods go, whatever ends the experiment (a win, a loss, an abort, a new spec)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from modelship import api, plugin
from modelship.core import experiment, gateway, istio, notifications, revisions
from modelship.core.analysis import abtest
from modelship.core.analysis.verdicts import RawMeasurement
from modelship.core.engine import routing
from modelship.core.engine.canary import LOST
from modelship.plugin.dashboard import rules

from .enginesim import OWNER, World, command
from .test_experiment_step import trial_spec as step_spec

pytestmark = pytest.mark.unit

NEW_IMAGE = "registry.example/fraud@sha256:" + "c" * 64
RIVAL_IMAGE = "registry.example/fraud@sha256:" + "d" * 64
TRIAL: dict[str, Any] = {
    "weight": 30,
    "duration": "10m",
    "metrics": [{"name": "accuracy"}],
    "challenger": {"image": RIVAL_IMAGE},
}
CHALLENGER = "fraud-challenger"


def trial_spec(image: str | None = None, trial: dict[str, Any] = TRIAL) -> api.ModelDeploymentSpec:
    """The experiment step's spec, with a challenger (`TRIAL`) by default."""
    return step_spec(image, trial)


def rival_revision(s: api.ModelDeploymentSpec) -> str:
    found = experiment.challenger_of(s, "fraud", 1)
    assert found is not None
    return found[0]


def rows(correct: int, of: int) -> tuple[float, float]:
    return float(of - correct), float(correct)


def accuracy(candidate: tuple[float, float], baseline: tuple[float, float]) -> RawMeasurement:
    return RawMeasurement(sample=abtest.Sample(candidate, baseline))


def walk(world: World, s: api.ModelDeploymentSpec, passes: int) -> None:
    for _ in range(passes):
        world.reconcile(s)
        world.settle()
        world.list_endpoints()


def started() -> tuple[World, api.ModelDeploymentSpec]:
    """A stable world (with EndpointSlices read), then the new image walked into its experiment
    against the challenger, whose run has started."""
    world = World()
    walk(world, trial_spec(), 2)
    new = trial_spec(NEW_IMAGE)
    walk(world, new, 6)
    return world, new


def run_of(world: World) -> api.AnalysisRun:
    return next(r for r in world.status.analysis or [] if r.kind == "experiment")


def condition(status: api.ModelDeploymentStatus, type_: str) -> api.Condition:
    return next(c for c in status.conditions or [] if c.type == type_)


def test_the_route_splits_three_ways_stable_getting_what_both_candidates_leave() -> None:
    assert gateway.weights("fraud", 30, 30) == {"fraud-stable": 40, "fraud-canary": 30, CHALLENGER: 30}
    assert gateway.weights("fraud", 50, 50)["fraud-stable"] == 0
    assert gateway.weights("fraud", 30) == {"fraud-stable": 70, "fraud-canary": 30}  # no third backend


def test_the_challenger_is_a_revision_of_the_spec_s_pods_with_its_own_image_and_model() -> None:
    s = trial_spec(NEW_IMAGE)
    template = experiment.challenger_template(s, api.Experiment.model_validate(TRIAL))
    assert template is not None and template.image == RIVAL_IMAGE and template.model == s.model
    assert template.port == s.port
    assert rival_revision(s) == revisions.revision_name("fraud", template)
    other = {**TRIAL, "challenger": {"image": RIVAL_IMAGE, "model": {**api.dump(s.model), "version": "2"}}}
    assert rival_revision(trial_spec(NEW_IMAGE, other)) != rival_revision(s)
    plain = {k: v for k, v in TRIAL.items() if k != "challenger"}
    assert experiment.challenger_of(trial_spec(NEW_IMAGE, plain), "fraud", 1) is None
    assert experiment.challenger_of(s, "fraud", 0) is None  # a setWeight step


def test_the_challenger_gets_weight_only_once_its_pods_are_up_and_its_service_lists_them() -> None:
    world = World()
    walk(world, trial_spec(), 2)
    new = trial_spec(NEW_IMAGE)
    rival = rival_revision(new)
    for _ in range(4):  # every pod but the challenger's comes up
        world.reconcile(new)
        unready = world.deployments.get(rival)
        world.settle()
        if unready is not None:
            world.deployments[rival] = unready
        world.list_endpoints()
    world.reconcile(new)
    assert rival in world.deployments and world.deployments[rival].spec_replicas >= 1
    assert world.services[CHALLENGER] == {"modelship.io/model": "fraud", "modelship.io/revision": rival}
    assert world.route is not None and CHALLENGER not in world.route
    status = world.status
    assert status.canary is not None and status.canary.challenger is not None
    assert (status.canary.challenger.revision, status.canary.challenger.weight) == (rival, 0)
    assert f"waiting for the challenger {rival}'s pods" in condition(status, "Progressing").message
    world.settle()  # its pods ready, but the Service's slices do not list them yet
    world.reconcile(new)
    assert CHALLENGER not in world.route
    assert f"waiting for Service {CHALLENGER} to list" in condition(world.status, "Progressing").message
    walk(world, new, 2)
    assert world.route == {"fraud-stable": 40, "fraud-canary": 30, CHALLENGER: 30}
    assert world.status.canary is not None and world.status.canary.challenger is not None
    assert world.status.canary.challenger.weight == 30
    run = run_of(world)
    assert (run.phase, run.baseline, run.step) == ("Running", rival, 1)
    changed = [e.message for e in world.events if e.reason == "WeightChanged"]
    assert changed[-1].endswith(f"canary weight 10% -> 30%, challenger {rival} 30%")


def test_the_step_waits_for_the_three_way_weights_to_show_on_the_route() -> None:
    world = World()
    walk(world, trial_spec(), 2)
    new = trial_spec(NEW_IMAGE)
    walk(world, new, 2)
    world.route_stuck = True
    walk(world, new, 4)
    assert not any(r.kind == "experiment" for r in world.status.analysis or [])
    message = condition(world.status, "Progressing").message
    assert f"to route fraud-stable=40, fraud-canary=30, {CHALLENGER}=30" in message


def test_candidate_better_completes_the_step_then_the_challenger_leaves_the_route_before_it_goes() -> None:
    world, new = started()
    rival = rival_revision(new)
    world.metrics["accuracy"] = accuracy(rows(900, 1000), rows(800, 1000))
    world.tick(601)
    world.route_stuck = True  # the gateway keeps the three-way split a while
    world.reconcile(new)
    run = run_of(world)
    assert run.phase == "Successful" and run.baseline == rival
    measured = run.metrics[0].measurements[-1]
    assert measured.comparison is not None and measured.comparison.outcome == "Better"
    assert measured.stable_value == pytest.approx(0.8)  # the challenger's accuracy
    status = world.status
    assert status.canary is not None and status.canary.step == 2 and status.canary.challenger is None
    # Still routed to: its pods and Service stay.
    assert rival in world.deployments and CHALLENGER in world.services
    world.route_stuck = False
    world.reconcile(new)  # the route drops the challenger; the read-back shows it gone
    assert world.route == {"fraud-stable": 70, "fraud-canary": 30}
    world.reconcile(new)
    assert rival not in world.deployments and CHALLENGER not in world.services


def test_challenger_better_aborts_as_experiment_lost_naming_it_and_never_swaps_the_image() -> None:
    world, new = started()
    rival = rival_revision(new)
    stable = world.status.stable_revision
    world.metrics["accuracy"] = accuracy(rows(800, 1000), rows(900, 1000))
    world.tick(601)
    world.reconcile(new)
    status = world.status
    assert status.aborted is not None and status.aborted.reason == LOST == "ExperimentLost"
    message = status.aborted.message or ""
    assert f"challenger {RIVAL_IMAGE} ({rival}) is better: accuracy: candidate worse: 0.8 vs 0.9" in message
    assert "effect -0.1000, p = " in message
    assert status.stable_revision == stable  # stable stays, nothing is promoted
    assert world.route == {"fraud-stable": 100, "fraud-canary": 0}
    assert "ExperimentLost" in [e.reason for e in world.events]
    world.reconcile(new)
    assert rival not in world.deployments and CHALLENGER not in world.services
    assert status.canary is None


def test_not_enough_data_pauses_with_the_challenger_still_at_its_weight() -> None:
    world, new = started()
    rival = rival_revision(new)
    world.metrics["accuracy"] = accuracy(rows(18, 20), rows(17, 20))
    world.tick(601)
    world.reconcile(new)
    status = world.status
    assert status.phase == "Paused" and condition(status, "Paused").reason == "ExperimentInconclusive"
    assert world.route is not None and world.route[CHALLENGER] == 30
    assert rival in world.deployments
    # `modelship promote` accepts it: the step moves on, the challenger is drained and deleted.
    new_spec, world.status = command("promote", new, world.status)
    walk(world, new_spec, 2)
    assert world.route is not None and CHALLENGER not in world.route
    assert rival not in world.deployments and CHALLENGER not in world.services


def test_a_pause_mid_experiment_keeps_the_challenger() -> None:
    world, new = started()
    rival = rival_revision(new)
    paused = new.model_copy(update={"paused": True})
    walk(world, paused, 2)
    assert world.route is not None and world.route[CHALLENGER] == 30 and rival in world.deployments
    assert world.status.canary is not None and world.status.canary.challenger is not None


@pytest.mark.parametrize("ending", ["abort", "new spec", "spec reverted"])
def test_whatever_ends_the_rollout_leaves_no_challenger_deployment_service_or_weight(ending: str) -> None:
    world, new = started()
    rival = rival_revision(new)
    assert rival in world.deployments and CHALLENGER in world.services
    if ending == "abort":
        after, world.status = command("abort", new, world.status)
    elif ending == "new spec":
        after = trial_spec("registry.example/fraud@sha256:" + "e" * 64)
    else:
        after = trial_spec()
    world.reconcile(after)
    assert world.route is not None and CHALLENGER not in world.route
    world.list_endpoints()
    world.reconcile(after)
    assert rival not in world.deployments and CHALLENGER not in world.services
    assert world.status.canary is None or world.status.canary.challenger is None


def test_a_challenger_changed_mid_experiment_leaves_the_route_before_its_service_moves() -> None:
    world, new = started()
    old = rival_revision(new)
    other = trial_spec(NEW_IMAGE, {**TRIAL, "challenger": {"image": "registry.example/x@sha256:" + "f" * 64}})
    rival = rival_revision(other)
    world.route_stuck = True
    world.reconcile(other)
    # The route still sends to the old challenger: its Service keeps selecting it, its pods stay.
    assert world.services[CHALLENGER]["modelship.io/revision"] == old and old in world.deployments
    world.route_stuck = False
    walk(world, other, 5)
    assert world.services[CHALLENGER]["modelship.io/revision"] == rival
    assert old not in world.deployments
    assert world.route == {"fraud-stable": 40, "fraud-canary": 30, CHALLENGER: 30}
    assert run_of(world).baseline == rival  # a new run: the one against the old challenger says nothing


def test_a_service_is_deleted_only_once_the_route_read_sends_it_nothing() -> None:
    world, _ = started()
    observations = world.observations(trial_spec(NEW_IMAGE))
    assert routing.challenger_sent(observations)
    world.route = {"fraud-stable": 100, "fraud-canary": 0}
    assert not routing.challenger_sent(world.observations(trial_spec(NEW_IMAGE)))
    world.gateway_accepted = False  # a gateway behind may still route the old split
    assert routing.challenger_sent(world.observations(trial_spec(NEW_IMAGE)))


def test_the_api_bounds_a_challenger_s_image() -> None:
    with pytest.raises(ValueError, match=r"experiment\.challenger\.image must pin the image by digest"):
        api.Experiment.model_validate({**TRIAL, "challenger": {"image": "registry.example/fraud:v2"}})


def test_kubectl_modelship_status_shows_the_three_way_split_the_challenger_and_its_comparison() -> None:
    world, new = started()
    rival = rival_revision(new)

    def shown() -> str:
        obj = {"metadata": {"name": "fraud", "namespace": "ml"}, "spec": api.dump(new)}
        return plugin.render({**obj, "status": api.dump(world.status)}, [])

    assert "Weight:     30% canary / 30% challenger / 40% stable\n" in shown()
    assert f"Challenger: {rival} (fraud-challenger, the experiment's second candidate)" in shown()
    assert f"Analysis:   step 2 of {world.status.rolling} against challenger {rival}: Running" in shown()


def test_the_dashboard_row_and_weight_chart_count_the_challenger_s_share() -> None:
    world, new = started()
    obj = {
        "metadata": {"name": "fraud", "namespace": "ml", "creationTimestamp": "2026-01-01T00:00:00+00:00"},
        "spec": api.dump(new),
        "status": api.dump(world.status),
    }
    row = rules.row(obj, world.now)
    assert row["challenger"] == {"revision": rival_revision(new), "weight": 30}
    assert rules.weight_point(obj, world.now)["stable"] == 40


def test_both_routers_write_the_three_way_split_and_read_it_back() -> None:
    split = gateway.weights("fraud", 30, 30)
    route = gateway.route(OWNER, "fraud", [api.ParentRef(name="gw")], split)
    assert gateway.read_weights(route, "fraud") == split
    ref = api.VirtualServiceRef(name="fraud", hosts=["fraud.example.com"])
    vs = istio.virtual_service(OWNER, ref, ["fraud.example.com"], [], split)
    assert istio.read_weights(vs, "fraud", None) == split
    hosts = [d["destination"]["host"] for d in vs["spec"]["http"][-1]["route"]]
    assert hosts == ["fraud-stable", "fraud-canary", CHALLENGER]
    # Once the experiment is over the challenger is no backend at all (not one at weight 0).
    after = gateway.with_headers(route, "fraud", gateway.weights("fraud", 30), [])
    assert after is not None and [r["name"] for r in after[-1]["backendRefs"]] == [
        "fraud-stable",
        "fraud-canary",
    ]


def test_a_lost_experiment_is_notified_as_an_analysis_failure() -> None:
    assert notifications.trigger(LOST) == "AnalysisFailed"


def test_a_challenger_that_is_the_stable_revision_is_compared_as_stable_never_run_twice() -> None:
    world = World()
    old_image = trial_spec().image
    same = {**TRIAL, "challenger": {"image": old_image}}
    walk(world, trial_spec(), 2)  # strategy is no part of a revision: the same stable revision
    stable = world.status.stable_revision
    new = trial_spec(NEW_IMAGE, same)
    assert rival_revision(new) == stable
    walk(world, new, 6)
    assert world.deployments[stable].spec_replicas == 4  # not sized as a challenger
    assert world.route == {"fraud-stable": 70, "fraud-canary": 30}
    assert world.status.canary is not None and world.status.canary.challenger is None
    assert run_of(world).baseline is None and CHALLENGER not in world.services


def test_the_docs_challenger_example_is_a_valid_experiment_within_the_weight_rule() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "analysis.md").read_text()
    section = text.split("### Two candidates: a challenger", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    doc = yaml.safe_load(block.group(1))["spec"]
    trial = api.Experiment.model_validate(doc["strategy"]["canary"]["steps"][0]["experiment"])
    assert trial.challenger is not None and trial.challenger.image != doc["image"]
    assert 2 * trial.weight <= 100 and doc["traffic"]["router"] == "gatewayAPI"
