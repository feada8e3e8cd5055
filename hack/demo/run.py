"""The demo's shell: start everything, play the acts, print progress, tear everything down.

Everything started is stopped in reverse order on success, on error and on SIGINT/SIGTERM
(the handlers turn both into an exception, so the same cleanup runs).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

from kubernetes import client

from demo import progress
from demo.acts import FIRST, NAME, Act, acts
from demo.settings import Settings
from devcluster.cluster import LocalCluster
from loadgen import Load
from loadgen.mix import holdout_samples
from localworld.podmetrics import served_by_revision
from localworld.prometheus import Prometheus
from localworld.rollouts import (
    ModelDeployments,
    canary_weight,
    model_deployment,
    model_spec,
    rolling_revision,
)
from localworld.stack import start as start_stack
from localworld.world import Endpoint, LocalWorld
from modelship.kube.storage import Storage
from modelship.plugin.args import DASHBOARD_PORT
from modelship.plugin.dashboard import server as dashboard_server
from modelship.plugin.dashboard.server import Running

NAMESPACE = "modelship-demo"
LOAD_BOUND_SECONDS = 6 * 3600  # the load's own time bound; the demo stops it long before
FEEDBACK_RATIO = 0.5
TERMINAL = ("Healthy", "RolledBack", "Degraded")
Print = Callable[[str], None]


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived: stop, and clean up like after any other end.

    A BaseException, like KeyboardInterrupt, so no `except Exception` on the way swallows it."""


def _raise(sig: int, frame: FrameType | None) -> None:
    raise Interrupted(signal.Signals(sig).name)


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    previous = {sig: signal.signal(sig, _raise) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def signals_ignored() -> Iterator[None]:
    """While tearing down: a second Ctrl-C must not leave half the processes running."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def live_stats(prometheus: Prometheus, namespace: str) -> dict[str, progress.RevisionStats]:
    """Each revision's request rate, error ratio, p99 and accuracy over the last seconds."""
    sel = f'namespace="{namespace}", route="/predict"'
    window = "[8s]"  # four 2 s scrapes: recent enough to see a step, enough points for rate()

    def q(promql: str) -> dict[str, float]:
        return progress.vector(prometheus.query(promql))

    try:
        return progress.combine(
            rates=q(f"sum by (revision) (rate(modelserver_requests_total{{{sel}}}{window}))"),
            errors=q(f'sum by (revision) (rate(modelserver_requests_total{{{sel}, code=~"5.."}}{window}))'),
            p99s=q(
                "histogram_quantile(0.99, sum by (revision, le) "
                f"(rate(modelserver_request_duration_seconds_bucket{{{sel}}}{window})))"
            ),
            correct=q(
                f'sum by (revision) (increase(modelserver_feedback_total{{namespace="{namespace}", '
                'outcome="correct"}[30s]))'
            ),
            scored=q(
                f'sum by (revision) (increase(modelserver_feedback_total{{namespace="{namespace}"}}[30s]))'
            ),
        )
    except (OSError, RuntimeError):  # a scrape hiccup must not end the demo; the next line has data
        return {}


class RevisionImages:
    """Revision (Deployment) name -> the model image name it runs, looked up once each."""

    def __init__(self, api: client.ApiClient, namespace: str, world: LocalWorld) -> None:
        self.apps = client.AppsV1Api(api)
        self.namespace = namespace
        self.by_ref = {image.ref: name for name, image in world.images.items()}
        self.known: dict[str, str] = {}

    def __call__(self, revisions: list[str]) -> dict[str, str]:
        for rev in revisions:
            if rev in self.known:
                continue
            try:
                deployment = self.apps.read_namespaced_deployment(rev, self.namespace)
                ref = deployment.spec.template.spec.containers[0].image  # type: ignore[union-attr]
            except client.ApiException:
                continue
            if str(ref) in self.by_ref:
                self.known[rev] = self.by_ref[str(ref)]
        return dict(self.known)


def verdicts(status: dict[str, Any]) -> list[str]:
    """What analysis measured last, per metric, and how the rollout ended (for the act's end)."""
    lines = []
    for run in status.get("analysis") or []:
        for metric in run.get("metrics") or []:
            last = (metric.get("measurements") or [{}])[-1]
            if last:
                lines.append(f"{run['kind']} analysis: {last.get('verdict')}: {last.get('message')}")
    progressing: dict[str, Any] = next(
        (c for c in status.get("conditions") or [] if c.get("type") == "Progressing"), {}
    )
    if progressing.get("reason") in ("AnalysisFailed", "AnalysisError", "SmokeTestFailed"):
        lines.append(f"{progressing['reason']}: {progressing.get('message', '')}")
    return lines


def play(
    act: Act,
    mds: ModelDeployments,
    world: LocalWorld,
    images: RevisionImages,
    load: Load,
    settings: Settings,
    out: Print,
) -> progress.ActResult:
    steps = progress.describe_steps(act.steps)
    out(f"\nact {act.number}: {act.title}: {act.from_image} -> {act.to_image}: {steps}")
    before = load.summary()
    started = time.monotonic()
    spec: dict[str, Any] = {
        **model_spec(world.image(act.to_image), act.to_image, NAME),
        "strategy": {"canary": {"steps": act.steps, "scaleDownDelay": "5s"}},
    }
    if act.analysis is not None:
        spec["analysis"] = act.analysis
    generation = int(mds.patch(NAME, spec)["metadata"]["generation"])
    status: dict[str, Any] = {}
    stable_image: str | None = None
    core = client.CoreV1Api(world.api)
    first_canary: float | None = None  # when the act's canary pods answered their first request
    weight_zero: float | None = None  # when the canary's weight went back to 0 after that
    next_line = started
    while time.monotonic() - started < settings.act_timeout:
        # Poll often (to time the rollback), print a line every DEMO_INTERVAL seconds.
        time.sleep(0.2)
        status = mds.status(NAME)
        now = time.monotonic()
        canary = rolling_revision(status)
        if first_canary is None and canary and served_by_revision(core, mds.namespace, canary)[canary] > 0:
            first_canary = now  # counted by the canary's own pods
        if first_canary is not None and weight_zero is None and not canary_weight(status):
            weight_zero = now
        if now < next_line and not (status.get("phase") in TERMINAL and not rolling_revision(status)):
            continue
        next_line = now + settings.interval
        stats = live_stats(world.prometheus, mds.namespace)
        revisions = [r for r in (status.get("stableRevision"), rolling_revision(status)) if r]
        names = images([*revisions, *stats])
        stable_image = names.get(status.get("stableRevision") or "")
        out(progress.progress_line(time.monotonic() - started, act, status, names, stats))
        current = int(status.get("observedGeneration") or 0) >= generation
        if current and status.get("phase") in TERMINAL and not rolling_revision(status):
            break
    else:
        out(f"  act {act.number} did not finish within {settings.act_timeout:.0f}s (DEMO_ACT_TIMEOUT)")
    after = load.summary()
    rollback = None
    if act.expect != "Healthy" and first_canary is not None and weight_zero is not None:
        rollback = weight_zero - first_canary
    result = progress.ActResult(
        act,
        phase=str(status.get("phase") or "Pending"),
        seconds=time.monotonic() - started,
        stable_image=stable_image,
        requests=after.requests - before.requests,
        errors=after.errors - before.errors,
        verdicts=verdicts(status),
        rollback_seconds=rollback,
    )
    for line in progress.act_end_lines(result):
        out(line)
    return result


def start_dashboard(api: client.ApiClient, prometheus: str) -> Running:
    """The dashboard on the demo's namespace: on its usual port, or any free one when that is taken."""
    kube = Storage(api)
    try:
        return dashboard_server.start(
            kube, NAMESPACE, all_namespaces=False, port=DASHBOARD_PORT, prometheus=prometheus
        )
    except OSError:
        return dashboard_server.start(kube, NAMESPACE, all_namespaces=False, port=0, prometheus=prometheus)


def run(settings: Settings, out: Print = print) -> int:
    """0 when every act ended as expected, 1 when one did not, 130 when interrupted."""
    planned = acts(settings)
    results: list[progress.ActResult] = []
    cleanup = contextlib.ExitStack()
    cluster: LocalCluster | None = None
    code = 1
    try:
        with signals_interrupt():
            out("finding (or building) the local control plane's binaries ...")
            cluster = LocalCluster.create(real_node=True)
            cleanup.callback(cluster.stop)
            stack = start_stack(cluster, cleanup, NAMESPACE, in_cluster=settings.in_cluster, say=out)
            api, world = stack.api, stack.world
            dashboard = start_dashboard(api, world.prometheus.url)
            cleanup.callback(dashboard.stop)
            out(f"dashboard: {dashboard.url} (kubectl modelship dashboard; up while the demo runs)")
            mds = ModelDeployments(api, NAMESPACE)
            first = world.image(FIRST)
            endpoint: Endpoint = world.expose(NAMESPACE, NAME)
            mds.create(model_deployment(NAME, first, FIRST, planned[0].steps, replicas=settings.replicas))
            out(f"ModelDeployment {NAMESPACE}/{NAME} on {FIRST} ({first.ref}); waiting for Healthy ...")
            mds.wait_phase(NAME, "Healthy", timeout=settings.act_timeout)
            load = Load(
                f"{endpoint.url}/predict",
                holdout_samples(),
                rate=settings.rate,
                duration=LOAD_BOUND_SECONDS,
                feedback_ratio=FEEDBACK_RATIO,
                host=endpoint.host,
            )
            cleanup.callback(load.stop)
            load.start()
            out(
                f"load: {settings.rate:g} requests/s through Traefik at {endpoint.url} "
                f"(HTTPRoute {NAME}, host {endpoint.host}), feedback for {FEEDBACK_RATIO:.0%}"
            )
            images = RevisionImages(api, NAMESPACE, world)
            for act in planned:
                results.append(play(act, mds, world, images, load, settings, out))
            final = load.stop()
            out("\nload: " + "\n      ".join(final.lines()))
            code = 0 if all(r.as_expected for r in results) and len(results) == len(planned) else 1
    except Interrupted as sig:
        out(f"\n{sig}: stopping")
        code = 130
    except Exception as err:  # report, then tear down like any other end
        out(f"\ndemo failed: {type(err).__name__}: {err}")
        if cluster is not None:
            cluster.keep_state = True  # the logs explain the failure
            out(f"logs kept in {cluster.state_dir}")
        code = 1
    finally:
        with signals_ignored():
            out("tearing down: load, operator, Traefik, Prometheus, the real node's pods, cluster ...")
            cleanup.close()
            out("torn down")
    for line in progress.summary_lines(results, len(planned)):
        out(line)
    sys.stdout.flush()
    return code
