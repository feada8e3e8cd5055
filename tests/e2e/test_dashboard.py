"""The dashboard against the real operator on the real node, behind Traefik and the world's
Prometheus, in Debian's chromium: while a bad model's canary holds at its weight the list shows it
running and the rollout page's weight chart reaches the step's weight; once its analysis fails, the
failure is on the timeline with its value and limit, and the why is at the top. (The other browser
checks need no pods: tests/integration/test_dashboard.py.)"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from playwright.sync_api import Page, expect, sync_playwright

from localworld.rollouts import model_deployment
from localworld.world import LocalWorld
from modelship.kube.storage import Storage
from modelship.plugin.dashboard.server import Running, start

from .conftest import Rollout
from .helpers import eventually
from .test_analysis import ANALYSIS, RATE

pytestmark = pytest.mark.e2e

NAME = "dash"
CHROMIUM = Path("/usr/bin/chromium")
# A pause at the canary's weight so the page can be looked at, then the analysis that fails it.
STEPS: list[dict[str, Any]] = [{"setWeight": 30}, {"pause": {"duration": "15s"}}, {"analysis": {}}]


@pytest.fixture
def dashboard(api_client: client.ApiClient, namespace: str, world: LocalWorld) -> Iterator[Running]:
    running = start(Storage(api_client), namespace, False, 0, world.prometheus.url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: `make chromium` installs Debian's (not skipped)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), chromium_sandbox=os.getuid() != 0)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()


def test_a_bad_canary_on_the_real_node_is_seen_at_its_weight_then_failed_on_the_timeline(
    rollout: Rollout, dashboard: Running, page: Page
) -> None:
    rollout.create(model_deployment(NAME, rollout.world.image("v1"), "v1", STEPS, analysis=ANALYSIS))
    rollout.mds.wait_phase(NAME, "Healthy")
    load = rollout.load(rollout.endpoint(NAME), rate=RATE, duration=240)
    eventually("v1 to answer", lambda: load.summary().codes.get(200, 0) >= 20, timeout=60)
    page.goto(dashboard.url)
    row = page.locator(f'#list tr[data-namespace="{rollout.namespace}"][data-name="{NAME}"]')
    expect(row).to_contain_text("Healthy")
    rollout.set_image(NAME, "v3-bad-errors")
    # The operator's own status, pushed live; the canary's pods start first (slower on a busy node).
    expect(row.locator("td.weight")).to_have_text("30%", timeout=150_000)
    row.get_by_role("link", name=NAME).click()
    expect(page.locator("#weights-chart")).to_contain_text("candidate 30%")
    # The analysis after the pause fails the canary: a mark with its value and limit.
    chart = page.locator("#marks-chart")
    expect(chart.locator(".mark.verdict-Failed")).to_have_count(1, timeout=90_000)
    expect(chart.locator(".failed-label")).to_contain_text("(max 0.05)")
    expect(page.locator("#why")).to_contain_text("AnalysisFailed")
    expect(page.locator("#weights-chart")).to_contain_text("candidate 0%")
