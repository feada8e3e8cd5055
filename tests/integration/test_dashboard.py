"""`kubectl modelship dashboard` against the real API server, over real HTTP and in a real browser
(Playwright driving Debian's chromium): the list shows a running canary, the weight chart reaches
the step's weight, an analysis failure is on the timeline with its value and limit, the promote
button moves a paused rollout on (the real operator, KWOK pods), a user bound only to `view` is
refused an abort with the API server's message, and a foreign Origin or Host is refused.

Where no operator runs, the tests write the ModelDeployment's status as the operator would, so each
state is reached at once.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devcluster.cluster import ExistingCluster
from modelship.kube.storage import Storage
from modelship.plugin.dashboard import charts, guard, rules
from modelship.plugin.dashboard.server import Running, start

from .mdhelpers import (
    Operator,
    crd_installed,
    create_md,
    deploy_stable,
    example,
    kube,
    md_path,
    operator,
    revision,
    wait_until,
)
from .test_analysis_prometheus import EXPECTED, exporter, idle_target, prom_url
from .test_analysis_prometheus import NAME as PROM_NAME
from .test_analysis_prometheus import NAMESPACE as PROM_NAMESPACE

# prom_url: the analysis tests' Prometheus, scraping an exporter of two revisions with known values.
__all__ = ["crd_installed", "exporter", "idle_target", "kube", "operator", "prom_url"]
pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
NAME = "fraud-detector"
IMAGES = {c: "registry.example/modelship/fraud-detector@sha256:" + c * 64 for c in "ab"}
STEPS = [{"setWeight": 20}, {"pause": {"duration": "2s"}}, {"setWeight": 50}, {"pause": {}}]
SCREENS = Path(os.environ.get("MODELSHIP_SCREENSHOTS", "build/screenshots"))


def manifest(image: str = IMAGES["a"], **spec: Any) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(example("basic.yaml"))
    doc["metadata"]["name"] = NAME
    doc["spec"].update({"image": image, "replicas": 4, "strategy": {"canary": {"steps": STEPS}}, **spec})
    return doc


def write_status(kube: Storage, namespace: str, status: dict[str, Any]) -> None:
    kube.merge(md_path(namespace, NAME) + "/status", {"status": status}, "modelship-tests")


CANARY_AT_20: dict[str, Any] = {
    "phase": "Progressing",
    "stableRevision": "fraud-detector-aaaaaaa",
    "rollout": {
        "canary": {"revision": "fraud-detector-bbbbbbb", "step": 1, "weight": 20, "actualWeight": 20}
    },
}


@pytest.fixture
def dashboard(kube: Storage, namespace: str, crd_installed: None) -> Iterator[Running]:
    running = start(kube, namespace, all_namespaces=True, port=0)
    try:
        yield running
    finally:
        running.stop()


def ask(
    running: Running, method: str, path: str, headers: dict[str, str] | None = None, body: Any = None
) -> tuple[int, dict[str, Any]]:
    """One request to the dashboard, as a browser on its own page would send it unless `headers`
    says otherwise (Host, Origin, token)."""
    sent = {"Host": f"127.0.0.1:{running.port}", guard.TOKEN_HEADER: running.token, **(headers or {})}
    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=30)
    conn.putrequest(method, path, skip_host=True)
    data = json.dumps(body).encode() if body is not None else b""
    for k, v in {**sent, "Content-Type": "application/json", "Content-Length": str(len(data))}.items():
        if v:
            conn.putheader(k, v)
    conn.endheaders(data)
    answer = conn.getresponse()
    raw = answer.read()
    conn.close()
    return answer.status, json.loads(raw) if raw.startswith(b"{") else {"raw": raw.decode()}


# ---- over HTTP ---------------------------------------------------------------------------------


def test_a_foreign_origin_a_rebound_host_and_a_missing_token_are_refused(
    dashboard: Running, kube: Storage, namespace: str
) -> None:
    create_md(kube, namespace, manifest())
    write_status(kube, namespace, CANARY_AT_20)
    path = f"/api/md/{namespace}/{NAME}/abort"
    for headers, word in (
        ({"Origin": "http://evil.example"}, "Origin"),
        ({"Host": f"evil.example:{dashboard.port}"}, "Host"),
        ({guard.TOKEN_HEADER: ""}, "token"),
    ):
        code, body = ask(dashboard, "POST", path, headers, body={})
        assert code == 403 and word in body["message"], (headers, body)
    for headers in ({"Origin": "http://evil.example"}, {guard.TOKEN_HEADER: ""}):
        code, _ = ask(dashboard, "GET", "/", headers)
        assert code == 403
    # Nothing was aborted: the refusals came before the API server was asked.
    assert "aborted" not in (kube.get(md_path(namespace, NAME)) or {})["status"].get("rollout", {})
    code, body = ask(
        dashboard, "GET", f"/api/md/{namespace}/{NAME}", {"Origin": f"http://127.0.0.1:{dashboard.port}"}
    )
    assert code == 200 and body["candidate"] == "fraud-detector-bbbbbbb"


def test_the_event_stream_pushes_each_status_change_without_being_asked(
    dashboard: Running, kube: Storage, namespace: str
) -> None:
    create_md(kube, namespace, manifest())
    conn = http.client.HTTPConnection("127.0.0.1", dashboard.port, timeout=30)
    conn.request(
        "GET", f"/api/stream?token={dashboard.token}", headers={"Host": f"127.0.0.1:{dashboard.port}"}
    )
    stream = conn.getresponse()
    assert stream.status == 200 and stream.headers["Content-Type"] == "text/event-stream"
    write_status(kube, namespace, CANARY_AT_20)
    deadline, event = time.monotonic() + 20, ""
    while time.monotonic() < deadline:
        line = stream.readline().decode()
        if line.startswith("event: "):
            event = line[7:].strip()
        elif line.startswith("data: ") and event == "row":
            row = json.loads(line[6:])
            # Only this test's object: an earlier test's namespace (same name and weight) may still be
            # going, and the dashboard lists every namespace.
            if (row["namespace"], row["name"], row["weight"]) == (namespace, NAME, 20):
                assert (row["step"], row["phase"]) == ("1/4", "Progressing")
                break
    else:
        raise AssertionError("no row with weight 20 came on the stream")
    conn.close()


RBAC = "/apis/rbac.authorization.k8s.io/v1"


@pytest.fixture
def viewer_kubeconfig(
    kube: Storage, cluster: ExistingCluster, namespace: str, tmp_path: Path
) -> Iterator[Path]:
    """A kubeconfig for a ServiceAccount bound only to the built-in `view` ClusterRole (which the
    chart's aggregated role extends to ModelDeployments: the same role, made here)."""
    role = f"dashboard-view-{namespace}"
    kube.create(
        f"{RBAC}/clusterroles",
        {
            "metadata": {"name": role, "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [
                {
                    "apiGroups": ["modelship.io"],
                    "resources": ["modeldeployments", "modeldeployments/status"],
                    "verbs": ["get", "list", "watch"],
                }
            ],
        },
    )
    kube.create(f"/api/v1/namespaces/{namespace}/serviceaccounts", {"metadata": {"name": "viewer"}})
    kube.create(
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        {
            "metadata": {"name": "viewer"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": "viewer", "namespace": namespace}],
        },
    )
    token = kube.create(
        f"/api/v1/namespaces/{namespace}/serviceaccounts/viewer/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    config = yaml.safe_load(Path(cluster.kubeconfig).read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    context["context"].update(user="viewer", namespace=namespace)
    config["contexts"] = [context]
    config["users"] = [{"name": "viewer", "user": {"token": token}}]
    path = tmp_path / "viewer.kubeconfig"
    path.write_text(yaml.safe_dump(config))
    viewer = Storage(client.ApiClient(_config_of(path)))
    wait_until("view aggregated to ModelDeployments", lambda: _can_list(viewer, namespace), timeout=30)
    try:
        yield path
    finally:
        kube.delete(f"{RBAC}/clusterroles/{role}")


def _config_of(path: Path) -> client.Configuration:
    from kubernetes import config

    loaded = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=loaded)  # type: ignore[no-untyped-call]
    return loaded


def _can_list(kube: Storage, namespace: str) -> bool:
    try:
        kube.items(md_path(namespace))
    except Exception:
        return False
    return True


@pytest.fixture
def viewer_dashboard(viewer_kubeconfig: Path) -> Iterator[Running]:
    """`kubectl-modelship dashboard --port 0 --kubeconfig ...` as the viewer, as a process: its
    address is read from what it prints."""
    command = [str(Path(sys.executable).parent / "kubectl-modelship"), "dashboard", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--kubeconfig", str(viewer_kubeconfig)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", first)
        assert found, (first, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
        yield Running(int(found[1]), found[2], lambda: None)
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_user_bound_only_to_view_sees_the_list_and_gets_the_api_servers_refusal_on_abort(
    viewer_dashboard: Running, kube: Storage, namespace: str
) -> None:
    create_md(kube, namespace, manifest())
    write_status(kube, namespace, CANARY_AT_20)
    wait_until(
        "the viewer's dashboard shows the canary",
        lambda: (
            ask(viewer_dashboard, "GET", "/api/list")[1]["rows"][0]["candidate"]
            if ask(viewer_dashboard, "GET", "/api/list")[1]["rows"]
            else None
        ),
        timeout=20,
    )
    code, body = ask(viewer_dashboard, "GET", "/api/list")
    assert body["scope"] == namespace  # may not list all namespaces: its own
    code, body = ask(viewer_dashboard, "POST", f"/api/md/{namespace}/{NAME}/abort", body={})
    assert code == 403
    assert f"system:serviceaccount:{namespace}:viewer" in body["message"], body
    assert 'cannot patch resource "modeldeployments/status"' in body["message"], body
    assert "aborted" not in (kube.get(md_path(namespace, NAME)) or {})["status"]["rollout"]


def test_the_charts_read_each_revisions_series_from_the_prometheus_the_analysis_uses(
    prom_url: str, kube: Storage
) -> None:
    obj = manifest(analysis={"prometheus": {"address": prom_url}, "metrics": [
        {"name": "error-rate", "template": "error-rate", "max": 0.01}]})  # fmt: skip
    obj["metadata"].update(namespace=PROM_NAMESPACE, name=PROM_NAME)
    obj["status"] = {
        "stableRevision": "fraud-a",
        "rollout": {"canary": {"revision": "fraud-b", "step": 1, "weight": 20}},
    }
    doc = charts.read(kube, obj, [], default_address=None)
    assert doc["problem"] is None and doc["address"] == prom_url
    by_chart = {c["chart"]: {s["role"]: s for s in c["series"]} for c in doc["charts"]}
    assert list(by_chart) == [chart for chart, _ in rules.CHARTS]
    for chart in ("error-rate", "accuracy", "confidence-mean"):
        for role, rev in (("stable", "fraud-a"), ("candidate", "fraud-b")):
            series = by_chart[chart][role]
            assert series["revision"] == rev and series["points"], (chart, role, series)
            assert series["points"][-1][1] == pytest.approx(EXPECTED[rev][chart], rel=0.02)
    assert by_chart["requests"]["candidate"]["points"][-1][1] > 0


def test_without_a_prometheus_the_charts_say_which_field_or_flag_to_set(kube: Storage) -> None:
    obj = manifest()
    obj["metadata"]["namespace"] = "ml"
    obj["status"] = {"stableRevision": "fraud-a"}
    doc = charts.read(kube, obj, [], default_address=None)
    assert doc["charts"] == [] and "--prometheus-address" in doc["problem"]
    unreachable = charts.read(kube, obj, [], default_address="http://127.0.0.1:9")
    assert "unreachable" in unreachable["problem"]


# ---- in the browser ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        raise RuntimeError(
            f"{CHROMIUM} is missing: the dashboard's browser tests need Debian's chromium "
            "(`make chromium`, or `apt-get install chromium`); they are not skipped"
        )
    with sync_playwright() as p:
        # As root (a CI container) chromium refuses to start sandboxed.
        b = p.chromium.launch(executable_path=str(CHROMIUM), chromium_sandbox=os.getuid() != 0)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    errors: list[str] = []  # the page's own script errors and refused loads (CSP) fail the test
    p.on("pageerror", lambda err: errors.append(str(err)))
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        yield p
        assert errors == []
    finally:
        context.close()


def test_the_list_shows_a_running_canary_and_its_page_the_weight_reached(
    dashboard: Running, kube: Storage, namespace: str, page: Page
) -> None:
    create_md(kube, namespace, manifest())
    write_status(kube, namespace, CANARY_AT_20)
    page.goto(dashboard.url)
    row = page.locator(f'#list tr[data-namespace="{namespace}"][data-name="{NAME}"]')
    expect(row).to_contain_text("Progressing")
    expect(row).to_contain_text("fraud-detector-bbbbbbb")
    expect(row.locator("td.weight")).to_have_text("20%")
    expect(row).to_contain_text("1/4")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "dashboard-list.png"), full_page=True)
    row.get_by_role("link", name=NAME).click()
    expect(page.locator("#weights-chart")).to_contain_text("candidate 20%")
    # The next step's weight, pushed by the watch, reaches the open page's chart.
    later = copy.deepcopy(CANARY_AT_20)
    later["rollout"]["canary"].update(step=3, weight=50, actualWeight=50)
    later["phase"] = "Paused"
    write_status(kube, namespace, later)
    expect(page.locator("#weights-chart")).to_contain_text("candidate 50%")
    expect(page.locator("#weights-chart")).to_contain_text("stable 50%")
    expect(page.locator('#timeline li[data-index="3"]')).to_have_class("current")
    expect(page.locator('#timeline li[data-index="2"]')).to_have_class("done")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "dashboard-rollout.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing needs a wider screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(SCREENS / "dashboard-rollout-phone.png"), full_page=True)


def test_an_analysis_failure_is_on_the_timeline_with_its_value_and_limit_and_the_why_on_top(
    dashboard: Running, kube: Storage, namespace: str, page: Page
) -> None:
    analysis = {
        "interval": "10s",
        "metrics": [{"name": "error-rate", "template": "error-rate", "max": 0.01}],
    }
    create_md(kube, namespace, manifest(analysis=analysis))
    failed = {
        "phase": "Degraded",
        "stableRevision": "fraud-detector-aaaaaaa",
        "rollout": {
            "aborted": {
                "revision": "fraud-detector-bbbbbbb",
                "reason": "AnalysisFailed",
                "message": "error-rate: 0.2 is above the limit 0.01",
            }
        },
        "analysis": [
            {
                "kind": "step",
                "revision": "fraud-detector-bbbbbbb",
                "step": 2,
                "phase": "Failed",
                "startedAt": "2026-12-02T03:00:00Z",
                "metrics": [
                    {
                        "name": "error-rate",
                        "successful": 1,
                        "failed": 1,
                        "measurements": [
                            {"verdict": "Successful", "value": 0.001, "measuredAt": "2026-12-02T03:00:10Z"},
                            {
                                "verdict": "Failed",
                                "value": 0.2,
                                "message": "0.2 > 0.01",
                                "measuredAt": "2026-12-02T03:00:20Z",
                            },
                        ],
                    }
                ],
            }
        ],
    }
    write_status(kube, namespace, failed)
    page.goto(dashboard.url + f"#/md/{namespace}/{NAME}")
    expect(page.locator("#why")).to_have_text(
        "Revision fraud-detector-bbbbbbb was aborted (AnalysisFailed): "
        "error-rate: 0.2 is above the limit 0.01."
    )
    chart = page.locator("#marks-chart")
    expect(chart.locator(".mark.verdict-Failed")).to_have_count(1)
    expect(chart.locator(".failed-label")).to_have_text("0.2 (max 0.01)")
    failed_row = page.locator("tr.measurement", has_text="Failed")
    expect(failed_row).to_contain_text("0.2")
    expect(failed_row).to_contain_text("max 0.01")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "dashboard-aborted.png"), full_page=True)
    page.goto(dashboard.url)
    expect(page.locator(f'#list tr[data-namespace="{namespace}"]')).to_contain_text(
        "was aborted (AnalysisFailed)"
    )


def test_the_promote_button_moves_a_paused_rollout_on(
    dashboard: Running, kube: Storage, namespace: str, operator: Operator, page: Page
) -> None:
    stable = deploy_stable(kube, namespace, manifest())
    canary = revision(manifest(IMAGES["b"]))
    kube.merge(md_path(namespace, NAME), {"spec": {"image": IMAGES["b"]}}, "modelship-tests")
    page.goto(dashboard.url + f"#/md/{namespace}/{NAME}")
    # The 2 s pause is a Paused phase too: the last step, `pause: {}`, is the one to wait for.
    expect(page.locator('#timeline li[data-index="3"]')).to_have_class("current", timeout=90_000)
    expect(page.locator("#phase")).to_have_text("Paused")
    expect(page.locator("#weights-chart")).to_contain_text("candidate 50%")
    SCREENS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENS / "dashboard-paused.png"), full_page=True)
    page.locator('button[data-verb="promote"]').click()
    expect(page.locator("#action-result")).to_have_text(f"modeldeployment.modelship.io/{NAME} promoted")
    expect(page.locator("#phase")).to_have_text("Healthy", timeout=60_000)
    obj = kube.get(md_path(namespace, NAME)) or {}
    assert obj["status"]["stableRevision"] == canary != stable
    page.goto(dashboard.url)
    row = page.locator(f'#list tr[data-namespace="{namespace}"]')
    expect(row.locator("td.mono").first).to_have_text(canary)


def test_chromium_is_debians(browser: Browser) -> None:
    assert shutil.which("chromium") == str(CHROMIUM) and browser.version
