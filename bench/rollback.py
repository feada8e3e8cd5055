"""Time to rollback (`make bench-rollback`): how long a bad canary serves users before modelship
takes its traffic away, in the local world (serving pods on the real node behind Traefik,
Prometheus scraping every 2s, analysis every 5s, the operator installed with Helm as a pod).

For each bad demo model, `--runs` times: a ModelDeployment on `v1` under steady load through
Traefik is rolled to the bad image. The clock starts when the canary's pods have answered their
first request (their own counter, polled every 50 ms) and stops when the HTTPRoute gives the
canary weight 0 again. Results: printed, and written to bench/results/rollback.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import client

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))

from devcluster.cluster import LocalCluster, wait_for
from loadgen import Load
from loadgen.mix import holdout_samples
from localworld import demomodels
from localworld.podmetrics import served_by_revision
from localworld.rollouts import ModelDeployments, model_deployment, rolling_revision
from localworld.stack import start as start_stack
from localworld.world import LocalWorld

BAD = ("v3-bad-errors", "v3-slow", "v3-inaccurate")
SCRAPE = "2s"
ANALYSIS = demomodels.analysis("5s", accuracy=True, count=3, minRequests=10)
STEPS: list[dict[str, Any]] = [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}]
TARGETS = {"v3-bad-errors": 15.0, "v3-slow": 15.0, "v3-inaccurate": 30.0}
# The same benchmark in the first wave's stand-in world (a pod runner for the kubelet, a home-made
# router for the gateway; bench/results/rollback.json at 237e7f9), kept for comparison.
PREVIOUS = {
    "world": "pod runner + home-made weighted router (stand-ins), operator as a host process",
    "median_s": {"v3-bad-errors": 5.6, "v3-slow": 5.01, "v3-inaccurate": 5.39},
    "max_s": {"v3-bad-errors": 10.42, "v3-slow": 9.27, "v3-inaccurate": 10.08},
}
COMPARISON = {
    "flagger": "rollback after `analysis.threshold` failed checks, one check per `analysis.interval`: "
    "interval x threshold, with a 1 minute interval by default (10 s minimum); e.g. 1m x 5 = 5 minutes",
    "argo_rollouts": "an AnalysisRun measures each metric every `interval` (none set: once) and aborts "
    "after more than `failureLimit` (default 0) failures, so at least one interval after the step "
    "starts; the documentation's examples use 1m to 5m intervals",
}


def route_weight(custom: client.CustomObjectsApi, namespace: str, name: str) -> int:
    route: Any = custom.get_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", namespace, "httproutes", name
    )
    refs = (route.get("spec", {}).get("rules") or [{}])[0].get("backendRefs") or []
    return sum(int(r.get("weight", 1)) for r in refs if r.get("name") == f"{name}-canary")


def one_run(
    world: LocalWorld, api: client.ApiClient, namespace: str, bad: str, run: int, rate: float
) -> dict[str, Any]:
    name = f"r{run}-{bad.removeprefix('v3-')}"
    mds = ModelDeployments(api, namespace)
    endpoint = world.expose(namespace, name)
    mds.create(model_deployment(name, world.image("v1"), "v1", STEPS, analysis=ANALYSIS))
    mds.wait_phase(name, "Healthy", timeout=180)
    load = Load(
        f"{endpoint.url}/predict",
        holdout_samples(),
        rate=rate,
        duration=300,
        feedback_ratio=0.5,
        host=endpoint.host,
    ).start()
    custom = client.CustomObjectsApi(api)
    core = client.CoreV1Api(api)
    try:
        wait_for("v1 to answer", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)
        bad_image = world.image(bad)
        mds.patch(
            name,
            {
                "image": bad_image.ref,
                "model": {"name": name, "version": bad, "sha256": bad_image.model_sha256},
            },
        )

        def first_canary_request() -> float | None:
            canary = rolling_revision(mds.status(name))
            served = canary is not None and served_by_revision(core, namespace, canary)[canary] > 0
            return time.monotonic() if served else None

        started = wait_for("the canary's first request", first_canary_request, timeout=180, interval=0.05)
        ended = wait_for(
            "canary weight 0",
            lambda: route_weight(custom, namespace, name) == 0 and time.monotonic(),
            timeout=180,
            interval=0.1,
        )
        status = mds.status(name)
        reason: dict[str, Any] = next(
            (c for c in status.get("conditions", []) if c["type"] == "Progressing"), {}
        )
        return {
            "seconds": round(ended - started, 2),
            "reason": reason.get("reason"),
            "message": reason.get("message"),
        }
    finally:
        load.stop()
        mds.delete(name)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=40.0, help="requests per second through Traefik")
    parser.add_argument("--out", type=Path, default=Path("bench/results/rollback.json"))
    args = parser.parse_args()

    results: dict[str, Any] = {}
    namespace = "bench-rollback"
    with contextlib.ExitStack() as cleanup:
        cluster = LocalCluster.create(real_node=True)
        cleanup.callback(cluster.stop)
        stack = start_stack(cluster, cleanup, namespace, scrape_interval=SCRAPE)
        for bad in BAD:
            runs = []
            for i in range(args.runs):
                outcome = one_run(stack.world, stack.api, namespace, bad, i, args.rate)
                print(f"{bad} run {i + 1}: {outcome['seconds']:.1f}s ({outcome['reason']})", flush=True)
                runs.append(outcome)
            seconds = [r["seconds"] for r in runs]
            results[bad] = {
                "runs_s": seconds,
                "min_s": min(seconds),
                "median_s": statistics.median(seconds),
                "max_s": max(seconds),
                "target_median_s": TARGETS[bad],
                "meets_target": statistics.median(seconds) <= TARGETS[bad],
                "reasons": sorted({str(r["reason"]) for r in runs}),
                "example_message": runs[-1]["message"],
            }

    report = {
        "what": "seconds from the first request a bad canary answers to its HTTPRoute weight 0",
        "setup": {
            "scrape_interval": SCRAPE,
            "analysis": ANALYSIS,
            "steps": STEPS,
            "load_rps": args.rate,
            "feedback_ratio": 0.5,
            "runs": args.runs,
            "machine": f"{platform.machine()}, {platform.python_version()}",
        },
        "results": results,
        "previous": PREVIOUS,
        "comparison_defaults": COMPARISON,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\n{'model':<16}{'min':>8}{'median':>8}{'max':>8}  target")
    for bad, r in results.items():
        verdict = "ok" if r["meets_target"] else "MISSED"
        row = f"{r['min_s']:>8.1f}{r['median_s']:>8.1f}{r['max_s']:>8.1f}"
        print(f"{bad:<16}{row}  <= {r['target_median_s']:.0f}s {verdict}")
    print(f"written to {args.out}")
    return 0 if all(r["meets_target"] for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
