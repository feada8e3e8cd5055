"""An experiment step's look, against Debian's real Prometheus: the shell counts both revisions
since the experiment began (`measure.experiment`) and the pure core decides (`core.experiment`).

A loopback exporter serves the metrics contract's feedback counters and request-duration buckets
for two pairs of revisions, growing on every scrape (Prometheus scrapes it every second): in the
first pair the candidate is more accurate than stable (95% against 80%, plenty of rows) with the
same latency; in the second both answer a couple of feedback rows per scrape, too few to tell.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from devcluster.cluster import ExistingCluster, wait_for
from modelship import api
from modelship.analysis import measure
from modelship.analysis.prometheus import Prometheus, PrometheusConfig
from modelship.core import experiment
from modelship.kube import storage
from modelship.kube.storage import Storage

from .mdhelpers import (
    Operator,
    crd_installed,
    deploy_stable,
    example,
    kube,
    md_path,
    md_status,
    operator_in,
    refusal,
    revision,
    wait_until,
)
from .test_analysis_prometheus import scrape_target, serve, start_prometheus

__all__ = ["crd_installed", "kube"]  # fixtures used by this module

pytestmark = pytest.mark.integration

NAMESPACE, NAME = "ml", "fraud"
BASE = 1000  # counters start as if this many scrapes had happened before the experiment
# Per scrape and revision: feedback rows (correct, incorrect), and requests per latency bucket.
FEEDBACK = {"fraud-new": (95, 5), "fraud-old": (80, 20), "fraud-quiet-new": (2, 0), "fraud-quiet-old": (1, 1)}
BUCKETS = (0.01, 0.05, 0.25)
LATENCY = {"fraud-new": (60, 30, 10), "fraud-old": (60, 30, 10), "fraud-quiet-new": (1, 0, 0),
           "fraud-quiet-old": (1, 0, 0)}  # fmt: skip
TRIAL = api.Experiment.model_validate(
    {"duration": "3s", "metrics": [{"name": "accuracy"}, {"name": "latency"}]}
)


# (namespace, revision) -> (feedback, latency) per scrape, for the operator's tests: their
# revisions live in each test's own namespace.
SERVED: dict[tuple[str, str], tuple[tuple[int, int], tuple[int, int, int]]] = {}


def exposition(n: int) -> str:
    k = BASE + n
    served = {(NAMESPACE, rev): (FEEDBACK[rev], LATENCY[rev]) for rev in FEEDBACK} | SERVED
    lines = ["# TYPE modelserver_feedback_total counter"]
    for (ns, rev), ((correct, incorrect), _) in served.items():
        for outcome, per in (("correct", correct), ("incorrect", incorrect)):
            lines.append(
                f'modelserver_feedback_total{{namespace="{ns}",revision="{rev}",outcome="{outcome}"}} '
                f"{per * k}"
            )
    lines.append("# TYPE modelserver_request_duration_seconds histogram")
    for (ns, rev), (_, counts) in served.items():
        sel = f'namespace="{ns}",revision="{rev}",route="/predict"'
        total = 0
        for le, per in zip(BUCKETS, counts, strict=True):
            total += per
            lines.append(f'modelserver_request_duration_seconds_bucket{{{sel},le="{le}"}} {total * k}')
        lines.append(f'modelserver_request_duration_seconds_bucket{{{sel},le="+Inf"}} {total * k}')
        lines.append(f"modelserver_request_duration_seconds_count{{{sel}}} {total * k}")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def prom_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    for target in serve(scrape_target(exposition)):
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {"job_name": "serving", "honor_labels": True, "static_configs": [{"targets": [target]}]}
            ],
        }
        prom = start_prometheus(tmp_path_factory.mktemp("prometheus"), config)
        try:
            wait_for_scrapes(prom.url, 6)
            yield prom.url
        finally:
            prom.stop()


def wait_for_scrapes(url: str, scrapes: int) -> None:
    client = Prometheus(PrometheusConfig(address=url))
    promql = 'count_over_time(modelserver_feedback_total{revision="fraud-new", outcome="correct"}[10s])'
    try:
        wait_for(
            f"{scrapes} scrapes of the exporter", lambda: (client.query(promql) or 0) >= scrapes, timeout=60
        )
    finally:
        client.close()


def look(prom_url: str, candidate: str, stable: str) -> api.AnalysisRun:
    """One look of an experiment that began 5 s ago, decided by the core."""
    now = datetime.now(UTC).replace(microsecond=0)
    spec = api.ModelDeploymentSpec.model_validate(
        {
            "model": {"name": NAME, "version": "2", "sha256": "a" * 64},
            "image": "registry.example/fraud@sha256:" + "b" * 64,
            "strategy": {"canary": {"steps": [{"experiment": api.dump(TRIAL)}]}},
        }
    )
    settings = experiment.analysis(spec, TRIAL)
    run = api.AnalysisRun(
        kind="experiment",
        revision=candidate,
        step=0,
        started_at=now - timedelta(seconds=5),
        metrics=[api.MetricStatus(name=m.name) for m in TRIAL.metrics],
    )
    config = PrometheusConfig(address=prom_url)
    metrics = [m.name for m in TRIAL.metrics]
    measured = measure.experiment(
        config, metrics, NAMESPACE, NAME, candidate, stable, experiment.window(run, now)
    )
    return experiment.record(run, TRIAL, settings, measured, now)


def test_a_more_accurate_candidate_with_plenty_of_rows_passes_the_experiment(prom_url: str) -> None:
    run = look(prom_url, "fraud-new", "fraud-old")
    assert run.phase == "Successful", run.message
    accuracy, latency = (m.measurements[-1] for m in run.metrics)
    assert accuracy.comparison is not None and accuracy.comparison.outcome == "Better"
    assert accuracy.value == pytest.approx(0.95, abs=0.01)
    assert accuracy.stable_value == pytest.approx(0.80, abs=0.01)
    # Only the rows since the experiment began (about 5 scrapes of 100), not the counters' totals.
    assert 300 <= accuracy.comparison.samples <= 800
    assert latency.comparison is not None and latency.comparison.outcome == "Equivalent"
    assert latency.comparison.effect == pytest.approx(0.0, abs=0.05)


def test_a_quiet_pair_is_inconclusive_not_enough_data(prom_url: str) -> None:
    run = look(prom_url, "fraud-quiet-new", "fraud-quiet-old")
    assert run.phase == "Inconclusive", run.message
    assert "accuracy: not enough data" in run.message
    accuracy = run.metrics[0].measurements[-1]
    assert accuracy.verdict == "Inconclusive"
    assert accuracy.comparison is not None and 0 < accuracy.comparison.samples <= 16


def test_a_revision_prometheus_never_saw_counts_nothing(prom_url: str) -> None:
    run = look(prom_url, "fraud-unseen", "fraud-old")
    assert run.phase == "Inconclusive"
    assert run.metrics[0].measurements[-1].comparison is not None
    assert run.metrics[0].measurements[-1].comparison.samples == 0


# ---- the operator: an experiment step in a rollout, against the real API server ----------------

MD = "fraud-detector"  # examples/basic.yaml
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}


@pytest.fixture
def operator_with_prometheus(
    cluster: ExistingCluster, namespace: str, crd_installed: None, prom_url: str, tmp_path: Path
) -> Iterator[Operator]:
    """The operator, with Prometheus only as its own default (the ModelDeployment has no analysis)."""
    op = operator_in(
        cluster, namespace, tmp_path / "operator.log", ["--prometheus-address", prom_url]
    ).start()
    try:
        yield op
    finally:
        op.stop()
        print(f"operator log: {op.log_path}")


def manifest(image: str, trial: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(example("basic.yaml"))
    doc["spec"].update({"image": image, "strategy": {"canary": {"steps": [{"experiment": trial}]}}})
    doc["spec"].pop("analysis", None)
    return doc


def experiment_run(kube: Storage, namespace: str, canary: str) -> dict[str, Any] | None:
    status = md_status(kube, namespace, MD)
    runs = status.get("analysis") or []
    return next((r for r in runs if r["kind"] == "experiment" and r["revision"] == canary), None)


def roll_out(
    kube: Storage, namespace: str, trial: dict[str, Any], candidate: tuple[int, int], stable: tuple[int, int]
) -> str:
    """The stable revision, then the candidate under `trial`, each answering feedback rows
    (correct, incorrect) per scrape; the candidate's revision."""
    old, new = manifest(IMAGES["a"], trial), manifest(IMAGES["b"], trial)
    canary = str(revision(new))
    SERVED[(namespace, revision(old))] = (stable, (5, 0, 0))
    SERVED[(namespace, canary)] = (candidate, (5, 0, 0))
    deploy_stable(kube, namespace, old)
    kube.merge(md_path(namespace, MD), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    return canary


def test_the_operator_promotes_a_more_accurate_candidate_after_its_experiment(
    kube: Storage, namespace: str, operator_with_prometheus: Operator
) -> None:
    canary = roll_out(kube, namespace, {"weight": 50, "duration": "5s"}, candidate=(95, 5), stable=(80, 20))
    wait_until(
        "the candidate promoted",
        lambda: md_status(kube, namespace, MD).get("stableRevision") == canary,
        timeout=120,
    )
    run = experiment_run(kube, namespace, canary)
    assert run is not None and run["phase"] == "Successful", run
    found = run["metrics"][0]["measurements"][-1]
    assert found["comparison"]["outcome"] == "Better" and found["comparison"]["pValue"] < 0.001
    assert found["value"] == pytest.approx(0.95, abs=0.01)


def test_the_operator_pauses_an_experiment_with_too_few_samples_as_inconclusive(
    kube: Storage, namespace: str, operator_with_prometheus: Operator
) -> None:
    canary = roll_out(kube, namespace, {"weight": 50, "duration": "5s"}, candidate=(1, 0), stable=(1, 0))

    def paused() -> bool:
        conditions = md_status(kube, namespace, MD).get("conditions") or []
        return any(c["type"] == "Paused" and c["reason"] == "ExperimentInconclusive" for c in conditions)

    wait_until("the experiment inconclusive", paused, timeout=120)
    status = md_status(kube, namespace, MD)
    assert status["phase"] == "Paused" and status["stableRevision"] != canary
    assert status["rollout"]["canary"]["weight"] == 50  # held where it was, for a person to decide
    run = experiment_run(kube, namespace, canary)
    assert run is not None and run["phase"] == "Inconclusive"
    assert "accuracy: not enough data" in run["message"]


# ---- an experiment between two candidates: the challenger, against the real API server ----------

ROUTE = "fraud-route"
CHALLENGER_IMAGE = "registry.example/modelship/fraud-detector@sha256:" + "c" * 64
CHALLENGER = f"{MD}-challenger"


def challenged(image: str, trial: dict[str, Any]) -> dict[str, Any]:
    """`manifest` behind an HTTPRoute modelship creates, its experiment against the challenger."""
    doc = manifest(image, {**trial, "challenger": {"image": CHALLENGER_IMAGE}})
    doc["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": ROUTE, "parentRefs": [{"name": "gw"}]}
    return doc


def route_weights(kube: Storage, namespace: str) -> dict[str, int]:
    route = kube.get(storage.route_path(namespace, ROUTE)) or {"spec": {"rules": [{}]}}
    return {r["name"]: r.get("weight", 1) for r in route["spec"]["rules"][-1].get("backendRefs") or []}


def challenger_revision(doc: dict[str, Any]) -> str:
    spec = api.ModelDeploymentSpec.model_validate(doc["spec"])
    found = experiment.challenger_of(spec, MD, 0)
    assert found is not None
    return found[0]


def challenge(
    kube: Storage, namespace: str, candidate: tuple[int, int], rival: tuple[int, int]
) -> tuple[str, str]:
    """Stable, then the candidate in an experiment against the challenger, each answering feedback
    rows (correct, incorrect) per scrape; (candidate revision, challenger revision)."""
    trial = {"weight": 30, "duration": "15s"}
    old, new = challenged(IMAGES["a"], trial), challenged(IMAGES["b"], trial)
    canary, rival_name = str(revision(new)), challenger_revision(new)
    SERVED[(namespace, revision(old))] = ((80, 20), (5, 0, 0))
    SERVED[(namespace, canary)] = (candidate, (5, 0, 0))
    SERVED[(namespace, rival_name)] = (rival, (5, 0, 0))
    deploy_stable(kube, namespace, old)
    kube.merge(md_path(namespace, MD), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    return canary, rival_name


def three_way(kube: Storage, namespace: str, rival: str) -> None:
    """The challenger's Deployment and Service up, and the route split three ways, while it runs."""
    wanted = {f"{MD}-stable": 40, f"{MD}-canary": 30, CHALLENGER: 30}
    wait_until("the route split three ways", lambda: route_weights(kube, namespace) == wanted, timeout=90)
    service = kube.get(storage.service_path(namespace, CHALLENGER))
    assert service is not None and service["spec"]["selector"]["modelship.io/revision"] == rival
    assert kube.get(storage.deployments_path(namespace, rival)) is not None
    canary = md_status(kube, namespace, MD)["rollout"]["canary"]
    assert canary["challenger"] == {"revision": rival, "weight": 30}


def challenger_gone(kube: Storage, namespace: str, rival: str) -> bool:
    return (
        CHALLENGER not in route_weights(kube, namespace)
        and kube.get(storage.service_path(namespace, CHALLENGER)) is None
        and kube.get(storage.deployments_path(namespace, rival)) is None
    )


def test_a_challenger_that_beats_the_candidate_aborts_it_as_experiment_lost_and_is_removed(
    kube: Storage, namespace: str, operator_with_prometheus: Operator
) -> None:
    canary, rival = challenge(kube, namespace, candidate=(80, 20), rival=(95, 5))
    three_way(kube, namespace, rival)
    wait_until(
        "the rollout aborted", lambda: md_status(kube, namespace, MD)["rollout"].get("aborted"), timeout=120
    )
    status = md_status(kube, namespace, MD)
    aborted = status["rollout"]["aborted"]
    assert aborted["reason"] == "ExperimentLost", aborted
    assert (
        f"challenger {CHALLENGER_IMAGE} ({rival}) is better: accuracy: candidate worse" in aborted["message"]
    )
    assert "p = " in aborted["message"]
    assert status["stableRevision"] != canary
    run = experiment_run(kube, namespace, canary)
    assert run is not None and run["baseline"] == rival and run["phase"] == "Failed"
    assert run["metrics"][0]["measurements"][-1]["stableValue"] == pytest.approx(0.95, abs=0.01)
    spec = kube.get(md_path(namespace, MD))["spec"]  # type: ignore[index]
    assert spec["image"] == IMAGES["b"]  # never swapped for the challenger's
    wait_until("no challenger left", lambda: challenger_gone(kube, namespace, rival), timeout=60)
    assert route_weights(kube, namespace) == {f"{MD}-stable": 100, f"{MD}-canary": 0}


def test_a_candidate_that_beats_the_challenger_is_promoted_and_the_challenger_removed(
    kube: Storage, namespace: str, operator_with_prometheus: Operator
) -> None:
    canary, rival = challenge(kube, namespace, candidate=(95, 5), rival=(80, 20))
    three_way(kube, namespace, rival)
    wait_until(
        "the candidate promoted",
        lambda: md_status(kube, namespace, MD).get("stableRevision") == canary,
        timeout=120,
    )
    run = experiment_run(kube, namespace, canary)
    assert run is not None and run["phase"] == "Successful" and run["baseline"] == rival
    wait_until("no challenger left", lambda: challenger_gone(kube, namespace, rival), timeout=60)


def test_admission_refuses_a_challenger_without_a_route_or_above_half_the_traffic(
    kube: Storage, namespace: str, crd_installed: None
) -> None:
    heavy = challenged(IMAGES["b"], {"weight": 60, "duration": "15s"})
    assert "experiment.weight must be at most 50 with a challenger" in refusal(kube, namespace, heavy)
    plain = challenged(IMAGES["b"], {"weight": 30, "duration": "15s"})
    plain["spec"]["traffic"] = {"router": "service"}
    assert "experiment.challenger needs spec.traffic.router gatewayAPI or istio" in refusal(
        kube, namespace, plain
    )
    same = manifest(IMAGES["b"], {"weight": 30, "duration": "15s", "challenger": {"image": IMAGES["b"]}})
    same["spec"]["traffic"] = {"router": "gatewayAPI", "httpRoute": ROUTE}
    assert "experiment.challenger must differ from the candidate" in refusal(kube, namespace, same)
