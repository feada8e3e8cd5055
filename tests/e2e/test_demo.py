"""`python -m demo` (what `make demo` runs) end to end: act 1 with short steps, and a Ctrl-C.

Each run starts its own cluster and world; afterwards no process may still mention the run's
state directory (in its command line or environment: cluster components, Prometheus, the
operator and every model server process all do while they run)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
STATE = re.compile(r"state and logs: (\S+)\)")
CHROMIUM = Path("/usr/bin/chromium")
SCREENS = REPO / "build" / "screenshots"


def demo(**env: str) -> subprocess.Popen[str]:
    full = {
        **os.environ,
        "PYTHONPATH": str(REPO / "hack"),
        "DEMO_STEP_SECONDS": "3",
        "DEMO_INTERVAL": "1",
        **env,
    }
    full.pop("KUBECONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "demo"], env=full, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def processes_mentioning(text: str) -> list[int]:
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes() or needle in (entry / "environ").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


def state_dir(output: str) -> str:
    match = STATE.search(output)
    assert match, output
    return match.group(1)


def test_the_demo_rolls_v1_to_v2_then_rolls_a_bad_model_back_and_leaves_nothing_running() -> None:
    proc = demo()
    output, _ = proc.communicate(timeout=540)
    assert proc.returncode == 0, output
    assert re.search(r"act 1 +step +\d/6 +canary +20%", output), output
    assert re.search(r"\| +v1 +\d+\.\d/s err +\d+\.\d% p99 +\d+ms", output), output
    assert "act 1: a good rollout: v1 -> v2: Healthy in" in output
    assert "v2 serves all traffic; as expected" in output
    # Act 2: v3-bad-errors is rolled back by analysis; the demo says by what and how fast.
    assert (
        "act 2: a bad rollout (v3-bad-errors), rolled back by analysis: v2 -> v3-bad-errors: Degraded"
        in output
    )
    assert re.search(r"AnalysisFailed: .*error-rate = [0-9.]+ is above max 0\.05", output), output
    assert re.search(r"rolled back \d+\.\ds after the canary's first request", output), output
    assert "2/2 acts ended as expected" in output
    assert "torn down" in output
    state = state_dir(output)
    assert processes_mentioning(state) == []
    assert not Path(state).exists()


def look_at_the_dashboard(output: str) -> None:
    """The demo's dashboard, at the address it printed, during the canary's first pause: the list
    and the rollout page (with Prometheus' charts of both revisions), saved as screenshots for
    docs/dashboard.md."""
    found = re.search(r"dashboard: (http://127\.0\.0\.1:\d+/\?token=\S+)", output)
    assert found, output
    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: `make chromium` installs Debian's (not skipped)")
    SCREENS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), chromium_sandbox=os.getuid() != 0)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(found[1])
            row = page.locator('#list tr[data-namespace="modelship-demo"]')
            expect(row.locator("td.weight")).to_have_text("20%")
            page.screenshot(path=str(SCREENS / "demo-dashboard-list.png"), full_page=True)
            row.get_by_role("link").click()
            expect(page.locator("#weights-chart")).to_contain_text("candidate 20%")
            # Prometheus' charts: both revisions' request rates drawn (a line each).
            requests = page.locator('svg[data-chart="requests"]')
            expect(requests).to_contain_text("stable")
            expect(requests).to_contain_text("candidate", timeout=60_000)
            page.screenshot(path=str(SCREENS / "demo-dashboard-rollout.png"), full_page=True)
        finally:
            browser.close()


def test_ctrl_c_in_the_middle_tears_everything_down() -> None:
    proc = demo(DEMO_STEP_SECONDS="60")
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 300
    for line in proc.stdout:
        lines.append(line)
        if "canary  20%" in line or time.monotonic() > deadline:
            break
    state = state_dir("".join(lines))
    assert processes_mentioning(state), "the demo should be running now"
    look_at_the_dashboard("".join(lines))
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    output = "".join(lines) + rest
    assert proc.returncode == 130, output
    assert "SIGINT: stopping" in output and "torn down" in output
    assert "stopped after 0 of 2 acts" in output
    assert processes_mentioning(state) == []
