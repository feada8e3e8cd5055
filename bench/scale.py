"""One operator and many ModelDeployments (`make bench-scale`): for each N in `SCALE_N` (default
100,300,1000,3000), a fresh local control plane with KWOK nodes (pods are scheduled and marked
ready, nothing runs), the operator as a process (`modelship run`, cluster-wide, default 30 s
resync), and N ModelDeployments (one replica, router `service`, a canary of three steps).

Measured at each N, printed and written to bench/results/scale.json:
- `all_healthy_s`: from the first create to every object Healthy at its generation;
- the operator's RSS, peak (VmHWM) and steady (VmRSS over the steady window), and its steady CPU
  seconds per minute, from /proc;
- in the steady window (all Healthy, two resync passes done, then `STEADY_PASSES` whole resync
  cycles, from a pass's end to a pass's end): the reconciler's API
  requests per minute by verb (the operator's own `modelship_api_requests_total`: the API server's
  `apiserver_request_total` has no user agent label, so it cannot tell the operator from the
  controller manager, the scheduler and KWOK; kopf's watches and annotation patches are not in
  it), the resync passes' durations (`modelship_resync_pass_duration_seconds`) and the
  operator's garbage collections by generation (`python_gc_collections_total`);
- `spec_change`: from a spec change (a new image: a rollout) to the operator's first write (the
  status at the new generation, seen by a watch) over `CHANGES` changes of random objects, each
  made while a resync pass was in flight (those made between passes are counted apart);
- `burst`: `BURST` image changes at once: seconds until each started (its canary revision in the
  status) and finished (Healthy on the new revision), the last and the per-object p50/p95 (at
  N < BURST + CHANGES, N - CHANGES of them);
- per created object and per rollout (`creation_per_object`, `burst.per_rollout`): the operator's
  CPU seconds, passes and requests by verb, the mean pass (`pass_mean_s`) and the mean wait for a
  worker by priority (`queue_wait_mean_s`);
- `spec_change_to_first_write_s.during_burst`: once every rollout of the burst has started,
  `CHANGES` changes of other objects, one every `BURST_CHANGE_EVERY_S`, while the burst's rollouts
  are in flight (`in_flight`: how many were sent before the burst was all Healthy), each to its
  first write.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import config

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "hack"))

from devcluster import nodes
from devcluster.cluster import LocalCluster, wait_for
from devcluster.net import free_port
from localworld.rollouts import ModelDeployments, OperatorProcess, install_crd, revision, rolling_revision
from modelship.kube.storage import Gone, Storage, md_path
from modelship.kube.workqueue import Priority

NAMESPACE = "scale"
DEFAULT_N = "100,300,1000,3000"
RESYNC_S = 30.0  # the operator's default
STEADY_PASSES = 2  # the steady window: this many whole resync cycles
CHANGES = 20
BURST = 100
BURST_CHANGE_EVERY_S = 0.5  # CHANGES spec changes of other objects during the burst, this far apart
PODS_PER_NODE = 500
CREATORS = 8  # threads creating and patching, as a GitOps sync would
STEPS = [{"setWeight": 50}, {"pause": {"duration": "5s"}}, {"setWeight": 100}]
TICK = os.sysconf("SC_CLK_TCK")
# The operator's log, read for resync pass ends this often (the bench's CPU, not the operator's).
POLL_S = 0.1


def digest(n: int) -> str:
    return f"{n:064x}"


def manifest(name: str, image: int) -> dict[str, Any]:
    return {
        "apiVersion": "modelship.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": name},
        "spec": image_spec(name, image)
        | {"replicas": 1, "strategy": {"canary": {"steps": STEPS}}, "traffic": {"router": "service"}},
    }


def image_spec(name: str, image: int) -> dict[str, Any]:
    return {
        "image": f"registry.example/scale/{name}@sha256:{digest(image)}",
        "model": {"name": name, "version": str(image), "sha256": digest(image + 1)},
    }


# ---- the operator's process and metrics ----------------------------------------------------------


@dataclasses.dataclass
class Usage:
    rss_mb: float
    peak_mb: float
    cpu_s: float


def usage(pid: int) -> Usage:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / TICK  # utime, stime
    return Usage(int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024, cpu)


def scrape(port: int) -> dict[str, float]:
    """The operator's /metrics as {'name{labels}': value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def gc_collections(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """The operator's garbage collections between two scrapes, by generation (a generation 2 one
    walks every object the process holds: CPU that grows with N)."""
    return {
        gen: int(after.get(key, 0) - before.get(key, 0))
        for gen in ("0", "1", "2")
        if (key := f'python_gc_collections_total{{generation="{gen}"}}') in after
    }


def requests_by_verb(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    per: dict[str, float] = {}
    for key, value in after.items():
        if key.startswith("modelship_api_requests_total{"):
            verb = key.split('verb="', 1)[1].split('"', 1)[0]
            per[verb] = per.get(verb, 0) + value - before.get(key, 0)
    return {v: round(n * 60 / seconds, 1) for v, n in sorted(per.items()) if n}


@dataclasses.dataclass(frozen=True)
class Cost:
    """What the operator spent from a moment on: its CPU, passes and requests (the machine is
    shared: these depend far less on the other work on it than the seconds do)."""

    pid: int
    port: int
    cpu_s: float
    metrics: dict[str, float]
    load: float

    @classmethod
    def start(cls, pid: int, port: int) -> Cost:
        return cls(pid, port, usage(pid).cpu_s, scrape(port), os.getloadavg()[0])

    def per_object(self, n: int) -> dict[str, Any]:
        now, cpu = scrape(self.port), usage(self.pid).cpu_s
        passes = now["modelship_reconcile_duration_seconds_count"] - self.metrics.get(
            "modelship_reconcile_duration_seconds_count", 0
        )
        requests = {
            k.split('verb="', 1)[1].split('"', 1)[0]: v - self.metrics.get(k, 0)
            for k, v in now.items()
            if k.startswith("modelship_api_requests_total{")
        }
        by_verb: dict[str, float] = {}
        for verb, count in requests.items():
            by_verb[verb] = by_verb.get(verb, 0) + count

        def mean(name: str, labels: str = "") -> float | None:
            count = now.get(f"{name}_count{labels}", 0) - self.metrics.get(f"{name}_count{labels}", 0)
            total = now.get(f"{name}_sum{labels}", 0) - self.metrics.get(f"{name}_sum{labels}", 0)
            return round(total / count, 3) if count else None

        waits = {p.label: mean("modelship_queue_wait_seconds", f'{{priority="{p.label}"}}') for p in Priority}
        return {
            "cpu_s": round((cpu - self.cpu_s) / n, 3),
            "passes": round(passes / n, 1),
            # Where a pass's seconds went: waiting for a worker, by priority, and the pass itself.
            "pass_mean_s": mean("modelship_reconcile_duration_seconds"),
            "queue_wait_mean_s": {p: w for p, w in waits.items() if w is not None},
            "requests": {v: round(c / n, 1) for v, c in sorted(by_verb.items()) if c},
            "load_average": [round(self.load, 1), round(os.getloadavg()[0], 1)],
        }


class Passes:
    """Resync passes as they end, from the operator's log ("resync pass N: ... in S s"), read as
    it grows: (start, end). The log costs the operator nothing more; polling its /metrics would
    (at 1000 objects a scrape is some 150 kB of text to render)."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.spans: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> Passes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _follow(self) -> None:
        with self.log.open() as f:
            f.seek(0, os.SEEK_END)  # passes from now on
            partial = ""
            while not self._stop.wait(POLL_S):
                *lines, partial = (partial + f.read()).split("\n")  # a line being written waits
                for line in lines:
                    message = str(_json_or_empty(line).get("message", ""))
                    if message.startswith("resync pass ") and message.endswith(" s"):
                        now = time.monotonic()
                        self.spans.append((now - float(message.rsplit(" ", 2)[1]), now))

    def in_flight_now(self) -> bool:
        """A pass has started (the loop sleeps RESYNC_S after each) and not ended yet."""
        return bool(self.spans) and time.monotonic() >= self.spans[-1][1] + RESYNC_S

    def in_flight(self, moment: float) -> bool:
        return any(start <= moment <= end for start, end in self.spans)

    def ended_after(self, moment: float) -> float | None:
        return next((end for _, end in self.spans if end > moment), None)


def _json_or_empty(line: str) -> dict[str, Any]:
    try:
        parsed = json.loads(line)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


# ---- what the ModelDeployments' statuses say, from a watch ---------------------------------------


@dataclasses.dataclass(frozen=True)
class Seen:
    at: float
    generation: int
    observed: int
    phase: str
    stable: str
    rolling: str


class Watcher:
    """Every ModelDeployment's status changes in the namespace, with when they arrived."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.seen: dict[str, list[Seen]] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()

    def _record(self, obj: dict[str, Any]) -> None:
        meta, status = obj["metadata"], obj.get("status") or {}
        seen = Seen(
            time.monotonic(),
            int(meta.get("generation", 1)),
            int(status.get("observedGeneration") or 0),
            str(status.get("phase") or ""),
            str(status.get("stableRevision") or ""),
            rolling_revision(status) or "",
        )
        with self.lock:
            self.seen.setdefault(meta["name"], []).append(seen)

    def _run(self) -> None:
        path = md_path(NAMESPACE)
        version = ""
        while not self._stop.is_set():
            try:
                if not version:
                    listed = self.storage.request("GET", path)
                    for obj in listed.get("items") or []:
                        self._record(obj)
                    version = listed["metadata"]["resourceVersion"]
                for event in self.storage.watch(path, version, 60):
                    obj = event["object"]
                    version = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._record(obj)
            except Gone:
                version = ""
            except Exception:  # a dropped stream, an API server going away at the end: watch again
                time.sleep(0.5)

    def latest(self) -> dict[str, Seen]:
        with self.lock:
            return {name: s[-1] for name, s in self.seen.items()}

    def first(self, name: str, after: float, ok: Callable[[Seen], bool]) -> float | None:
        with self.lock:
            return next((s.at for s in self.seen.get(name, []) if s.at >= after and ok(s)), None)

    def wait(self, what: str, ok: Callable[[dict[str, Seen]], bool], timeout: float) -> float:
        return float(wait_for(what, lambda: ok(self.latest()) and time.monotonic(), timeout=timeout))


def healthy_at(generation: dict[str, int]) -> Callable[[dict[str, Seen]], bool]:
    def ok(latest: dict[str, Seen]) -> bool:
        return all(
            (s := latest.get(n)) is not None and s.phase == "Healthy" and s.observed >= g
            for n, g in generation.items()
        )

    return ok


def rolling_to(rev: str) -> Callable[[Seen], bool]:
    return lambda s: s.rolling == rev


def observed(generation: int) -> Callable[[Seen], bool]:
    return lambda s: s.observed >= generation


def healthy_on(rev: str) -> Callable[[Seen], bool]:
    return lambda s: s.phase == "Healthy" and s.stable == rev


def quantiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"p50": round(statistics.median(ordered), 3), "p95": round(p95, 3), "max": round(ordered[-1], 3)}


# ---- one N ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def world(n: int, state: Path) -> Iterator[tuple[Storage, OperatorProcess, int]]:
    network = nodes.claim_pod_network()
    count = max(3, math.ceil(2.5 * n / PODS_PER_NODE))
    fake = [dataclasses.replace(nodes.cpu_node(i, network), pods=str(PODS_PER_NODE)) for i in range(count)]
    with contextlib.ExitStack() as cleanup:
        cluster = LocalCluster.create(fake_nodes=fake)
        cleanup.callback(cluster.stop)
        cluster.start()
        api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
        storage = Storage(api)
        install_crd(storage)
        cluster.kubectl("create", "namespace", NAMESPACE)
        wait_for(
            "the default ServiceAccount",
            lambda: storage.get(f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts/default"),
            timeout=60,
        )
        port = free_port()
        state.mkdir(parents=True, exist_ok=True)
        operator = OperatorProcess(
            cluster.env,
            state / f"operator-{n}.log",
            resync_seconds=RESYNC_S,
            args=["--metrics-port", str(port), "--log-format", "json"],
        ).start()
        cleanup.callback(operator.stop)
        wait_for("the operator's metrics", lambda: _answers(port), timeout=60)
        yield storage, operator, port


def _answers(port: int) -> bool:
    try:
        scrape(port)
    except OSError:
        return False
    return True


def run(n: int, state: Path) -> dict[str, Any]:
    result: dict[str, Any] = {"n": n}
    with (
        world(n, state) as (storage, operator, port),
        Watcher(storage) as watch,
        Passes(operator.log_path) as passes,
    ):
        assert operator.child is not None and operator.child.pid is not None
        pid = operator.child.pid
        time.sleep(3)
        result["idle_rss_mb"] = round(usage(pid).rss_mb, 1)
        mds = ModelDeployments(storage, NAMESPACE)
        names = [f"md-{i:05d}" for i in range(n)]
        images = dict.fromkeys(names, 1)
        generation = dict.fromkeys(names, 1)

        started, cost = time.monotonic(), Cost.start(pid, port)
        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(lambda name: mds.create(manifest(name, 1)), names))
        created = time.monotonic()
        done = watch.wait("all Healthy", healthy_at(generation), timeout=120 + 2.0 * n)
        result["create_s"] = round(created - started, 1)
        result["all_healthy_s"] = round(done - started, 1)
        result["creation_per_object"] = cost.per_object(n)
        print(f"N={n}: all Healthy after {result['all_healthy_s']} s", flush=True)

        # Steady: the passes the creation triggered worked off (two resync passes ended after
        # all were Healthy, the second begun after the first), then the window.
        settle = 8 * RESYNC_S + n
        first = wait_for("a resync pass after all Healthy", lambda: passes.ended_after(done), timeout=settle)
        wait_for("a second resync pass", lambda: passes.ended_after(first), timeout=settle)
        result["settled_after_healthy_s"] = round(time.monotonic() - done, 1)
        # The window: whole resync cycles (from a pass's end to the end of the STEADY_PASSES-th
        # after it), so the rates per minute hold as many passes as the operator makes.
        before, m0, t0 = usage(pid), scrape(port), time.monotonic()
        rss: list[float] = []
        while sum(1 for _, e in passes.spans if e > t0) < STEADY_PASSES:
            if time.monotonic() - t0 > STEADY_PASSES * (RESYNC_S + n):
                raise TimeoutError(f"fewer than {STEADY_PASSES} resync passes in the steady window")
            time.sleep(1)
            rss.append(usage(pid).rss_mb)
        after, m1, t1 = usage(pid), scrape(port), time.monotonic()
        window = t1 - t0
        steady_passes = [e - s for s, e in passes.spans if t0 <= e <= t1]
        result["steady"] = {
            "window_s": round(window, 1),
            "rss_mb": round(statistics.median(rss), 1),
            "cpu_s_per_min": round((after.cpu_s - before.cpu_s) * 60 / window, 2),
            "api_requests_per_min": requests_by_verb(m0, m1, window),
            "resync_pass_s": [round(d, 2) for d in steady_passes],
            "gc_collections": gc_collections(m0, m1),
        }
        print(f"N={n}: steady {result['steady']}", flush=True)

        # Spec changes while a resync pass is in flight.
        rng = random.Random(n)
        changes: list[tuple[float, float | None]] = []
        deadline = time.monotonic() + 12 * RESYNC_S
        while len(changes) < CHANGES and time.monotonic() < deadline:
            if not passes.in_flight_now():
                time.sleep(0.05)
                continue
            name = rng.choice(names)
            images[name] += 1
            generation[name] += 1
            gen, sent = generation[name], time.monotonic()
            mds.patch(name, image_spec(name, images[name]))

            def written(name: str = name, gen: int = gen, sent: float = sent) -> float | None:
                return watch.first(name, sent, lambda s: s.observed >= gen)

            with contextlib.suppress(TimeoutError):
                wait_for("the first write", written, timeout=10, interval=0.01)
            changes.append((sent, written()))
        last = changes[-1][0] if changes else time.monotonic()
        wait_for("the pass to end", lambda: passes.ended_after(last), timeout=4 * RESYNC_S + n)
        during = [f - s for s, f in changes if f is not None and passes.in_flight(s)]
        between = [f - s for s, f in changes if f is not None and not passes.in_flight(s)]
        result["spec_change_to_first_write_s"] = {
            "during_resync": {"count": len(during), **quantiles(during)},
            "between_passes": {"count": len(between), **quantiles(between)},
            "missed": sum(1 for _, f in changes if f is None),
        }
        print(f"N={n}: spec change {result['spec_change_to_first_write_s']}", flush=True)
        watch.wait("the changed objects Healthy", healthy_at(generation), timeout=300)

        # A burst of simultaneous rollouts, and spec changes of other objects while it is in flight
        # (at small N the burst leaves CHANGES objects out for them).
        burst = rng.sample(names, min(BURST, n - CHANGES))
        others = rng.sample([x for x in names if x not in set(burst)], CHANGES)
        for name in burst:
            images[name] += 1
            generation[name] += 1
        wanted = {name: revision(manifest(name, images[name])) for name in burst}
        sent, cost = time.monotonic(), Cost.start(pid, port)
        with ThreadPoolExecutor(CREATORS) as pool:
            list(pool.map(lambda name: mds.patch(name, image_spec(name, images[name])), burst))
        patched = time.monotonic()
        # In flight: every rollout of the burst has started (a change sent before would queue
        # behind the burst's own spec changes, as it should) and most have not finished.
        wait_for(
            "the burst started",
            lambda: all(watch.first(x, sent, rolling_to(wanted[x])) is not None for x in burst),
            timeout=300,
            interval=0.1,
        )
        amid: list[tuple[str, int, float]] = []  # (name, generation, sent)
        for name in others:
            time.sleep(BURST_CHANGE_EVERY_S)
            images[name] += 1
            generation[name] += 1
            amid.append((name, generation[name], time.monotonic()))
            mds.patch(name, image_spec(name, images[name]))
        end = watch.wait("the burst Healthy", healthy_at({n_: generation[n_] for n_ in burst}), timeout=600)
        starts = [watch.first(x, sent, rolling_to(wanted[x])) for x in burst]
        ends = [watch.first(x, sent, healthy_on(wanted[x])) for x in burst]
        start_s = [t - sent for t in starts if t is not None]
        end_s = [t - sent for t in ends if t is not None]
        result["burst"] = {
            "rollouts": len(burst),
            "patched_s": round(patched - sent, 2),
            "all_started_s": round(max(start_s), 2) if len(start_s) == len(burst) else None,
            "started_s": quantiles(start_s),
            "all_finished_s": round(end - sent, 2),
            "finished_s": quantiles(end_s),
        }
        amid_firsts = [watch.first(x, at, observed(g)) for x, g, at in amid]
        amid_s = [f - at for (_, _, at), f in zip(amid, amid_firsts, strict=True) if f is not None]
        result["spec_change_to_first_write_s"]["during_burst"] = {
            "count": len(amid_s),
            "in_flight": sum(1 for _, _, at in amid if at < end),
            **quantiles(amid_s),
        }
        watch.wait("the changed objects Healthy", healthy_at(generation), timeout=300)
        # The burst's and the changes' rollouts together: the passes of one cannot be told apart.
        result["burst"]["per_rollout"] = cost.per_object(len(burst) + len(amid))
        print(f"N={n}: burst {result['burst']}", flush=True)
        print(f"N={n}: spec change during the burst {result['spec_change_to_first_write_s']}", flush=True)
        final = usage(pid)
        result["rss_peak_mb"] = round(final.peak_mb, 1)
        result["threads_at_end"] = int(
            next(
                line.split()[1]
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("Threads:")
            )
        )
        result["operator_log_errors"] = sum(
            1 for line in operator.log_lines() if line.get("levelname", line.get("level")) == "ERROR"
        )
    return result


def commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD", "--", "operator"], check=False).returncode
    return out.stdout.strip() + ("+changes" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_mb": mem,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench/results/scale.json"))
    parser.add_argument("--n", default=os.environ.get("SCALE_N", DEFAULT_N), help="comma-separated Ns")
    parser.add_argument("--state", type=Path, default=Path("build/scale"), help="the operators' logs")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "what": __doc__,
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": commit(),
        "machine": machine(),
        "setup": {
            "resync_seconds": RESYNC_S,
            "steady_window_passes": STEADY_PASSES,
            "log_poll_s": POLL_S,
            "steps": STEPS,
            "replicas": 1,
        },
        "runs": [],
    }
    for n in (int(x) for x in args.n.split(",") if x.strip()):
        try:
            report["runs"].append(run(n, args.state))
        except Exception as e:  # a size that could not finish is a result too
            report["runs"].append({"n": n, "error": f"{type(e).__name__}: {e}"})
            print(f"N={n}: ERROR {e}", flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")
    return 1 if any("error" in r for r in report["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
