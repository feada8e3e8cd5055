"""The fault suite's figures (`make bench-faults`): every scenario of `localworld.faults` (operator
SIGKILLs at random moments and after each write of a pass, kube-apiserver and etcd killed,
Prometheus down for 3 and 10 analysis intervals, Traefik restarted, a serving pod killed, an image
that never becomes ready, three digests within a second) in the local world with its real node,
printed and written to bench/results/faults.json: per scenario, the faults injected, steps
repeated and skipped, weight regressions, failed user requests, Events missing, and seconds to
finish against the same canary with no fault. tests/e2e/test_faults.py runs the same scenarios
and asserts on the same figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from kubernetes import config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))

from devcluster.cluster import LocalCluster
from localworld.faults import canaries
from localworld.faults.suite import BASELINES, SCENARIOS
from localworld.faults.suite import suite as fault_suite
from localworld.rollouts import install_crd
from localworld.world import LocalWorld


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/faults.json"))
    parser.add_argument("--seed", type=int, default=None, help="the random kills' moments (default: random)")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    started = time.monotonic()
    with contextlib.ExitStack() as cleanup:
        cluster = LocalCluster.create(real_node=True)
        cleanup.callback(cluster.stop)
        cluster.start()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        world = LocalWorld(cluster, api, cluster.state_dir / "localworld", scrape_interval=canaries.SCRAPE)
        cleanup.callback(world.stop)
        world.start()
        install_crd(api)
        ready = time.monotonic()
        with fault_suite(world, api, cluster, cluster.state_dir / "faults", args.seed) as suite:
            for name in (*SCENARIOS, *(f"baseline-{s}" for s in BASELINES)):
                try:
                    figures = suite.result(name)
                except Exception as e:  # a scenario that could not finish is a result too
                    results[name] = {"scenario": name, "error": f"{type(e).__name__}: {e}"}
                    print(f"{name}: ERROR {e}", flush=True)
                    continue
                print(figures.line(), flush=True)
                results[name] = figures.as_json()
            seed = suite.seed
        suite_seconds = time.monotonic() - ready

    report = {
        "what": "per fault scenario: faults injected, steps repeated and skipped, weight regressions, "
        "failed user requests (the load generator's non-2xx answers; for a fault that takes the gateway "
        "or a serving pod down, those in the fault's own window are failed_during_fault), transition "
        "Events missing, and seconds from the spec change to the end against the same canary with no "
        "fault (baseline_seconds); notes: what else each scenario checks",
        "setup": {
            "scrape_interval": canaries.SCRAPE,
            "analysis": canaries.ANALYSIS,
            "steps": {
                "steps4": canaries.STEPS4,
                "steps8": canaries.STEPS8,
                "analysis": canaries.ANALYSIS_STEPS,
            },
            "load_rps": {"plain": canaries.RATE, "analysis": canaries.ANALYSIS_RATE},
            "random_kill_seed": seed,
            "suite_seconds": round(suite_seconds, 1),
            "total_seconds": round(time.monotonic() - started, 1),
            "machine": f"{platform.machine()}, {platform.python_version()}",
        },
        "scenarios": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"written to {args.out}")
    failed = [n for n, r in results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
