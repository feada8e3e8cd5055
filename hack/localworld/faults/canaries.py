"""The canaries the fault scenarios roll out, and the load and analysis they run with."""

from __future__ import annotations

from typing import Any

from localworld import demomodels

SCRAPE = "2s"  # the world's scrape interval (the e2e fixture's too)
RATE = 10.0  # requests per second through Traefik, per ModelDeployment
ANALYSIS_RATE = 20.0  # enough for minRequests within an interval at the canary's 50%
INTERVAL_SECONDS = 5
STEPS4: list[dict[str, Any]] = [
    {"setWeight": 20},
    {"pause": {"duration": "3s"}},
    {"setWeight": 50},
    {"pause": {"duration": "3s"}},
]
STEPS8: list[dict[str, Any]] = [
    step for weight in (10, 25, 50, 75) for step in ({"setWeight": weight}, {"pause": {"duration": "3s"}})
]
ANALYSIS_STEPS: list[dict[str, Any]] = [
    {"setWeight": 50},
    {"analysis": {}},
    {"setWeight": 80},
    {"pause": {"duration": "2s"}},
]
# Measure every 5 s (the world scrapes every 2 s); a step passes after 2 good rounds.
ANALYSIS = demomodels.analysis(
    f"{INTERVAL_SECONDS}s", count=2, window="20s", minRequests=5, inconclusiveLimit=20
)
HELD: list[dict[str, Any]] = [{"setWeight": 50}, {"pause": {}}]  # the targeted kills' canary
UNREACHABLE_TIMEOUT = "30s"  # the 10x outage's second ModelDeployment rolls back past it
NEVER_READY = "127.0.0.1:9/modelship-faults/never-ready@sha256:" + "0" * 64  # refused on loopback
STEP_REASONS = {"setWeight": "WeightChanged", "pause": "PauseStarted", "analysis": "AnalysisSuccessful"}
