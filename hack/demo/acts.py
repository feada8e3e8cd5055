"""The demo's acts as data: what is rolled out, through which steps, and what should happen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from demo.settings import Settings
from localworld import demomodels

NAME = "risk"  # the ModelDeployment, its route and the model's name
FIRST = "v1"  # what the demo starts on


@dataclass(frozen=True)
class Act:
    number: int
    title: str
    from_image: str  # catalogue image names (also the model versions)
    to_image: str
    steps: list[dict[str, Any]]
    expect: str  # the phase the act should end in
    analysis: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def expected_stable(self) -> str:
        """The image serving all traffic at the end: the new one, or the old one after a rollback."""
        return self.to_image if self.expect == "Healthy" else self.from_image


def analysis(settings: Settings) -> dict[str, Any]:
    """spec.analysis for the bad rollout: the builtin templates over the serving image's metrics,
    measured every 5 s (the world scrapes every 2 s); a step passes after 3 good rounds."""
    return demomodels.analysis(
        "5s", accuracy=True, count=3, failureLimit=0, noData="inconclusive", minRequests=10
    )


def acts(settings: Settings) -> list[Act]:
    pause = {"pause": {"duration": f"{settings.step_seconds:g}s"}}
    good = Act(
        1,
        "a good rollout",
        FIRST,
        "v2",
        [{"setWeight": 20}, pause, {"setWeight": 50}, pause, {"setWeight": 80}, pause],
        expect="Healthy",
    )
    bad = Act(
        2,
        f"a bad rollout ({settings.bad}), rolled back by analysis",
        "v2",
        settings.bad,
        [{"setWeight": 20}, {"analysis": {}}, {"setWeight": 50}, {"analysis": {}}],
        expect="Degraded",  # aborted by analysis: stable keeps all traffic, reason AnalysisFailed
        analysis=analysis(settings),
    )
    return [good, bad][: settings.acts]
