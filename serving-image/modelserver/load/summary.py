"""What a load run saw, as numbers and as the lines the CLI prints (pure)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100) of unsorted values; None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Summary:
    elapsed: float  # seconds since the first request was due
    codes: Counter[int] = field(default_factory=Counter)  # predict answers by status (0: no answer)
    p50: float | None = None  # seconds, predict requests
    p99: float | None = None
    feedback_sent: int = 0
    feedback_codes: Counter[int] = field(default_factory=Counter)
    correct: int = 0  # rows the servers scored correct from our labels
    incorrect: int = 0

    @property
    def requests(self) -> int:
        return sum(self.codes.values())

    @property
    def errors(self) -> int:
        """Answers that were not 2xx (including no answer at all)."""
        return sum(n for code, n in self.codes.items() if not 200 <= code < 300)

    @property
    def accuracy(self) -> float | None:
        scored = self.correct + self.incorrect
        return self.correct / scored if scored else None

    def lines(self) -> list[str]:
        rate = self.requests / self.elapsed if self.elapsed > 0 else 0.0
        codes = "  ".join(f"{code or 'no answer'}: {n}" for code, n in sorted(self.codes.items()))
        out = [f"requests: {self.requests} in {self.elapsed:.1f}s ({rate:.1f}/s)  {codes}".rstrip()]
        if self.p50 is not None and self.p99 is not None:
            out.append(f"latency: p50 {self.p50 * 1000:.1f} ms  p99 {self.p99 * 1000:.1f} ms")
        if self.feedback_sent:
            accepted = sum(n for code, n in self.feedback_codes.items() if 200 <= code < 300)
            accuracy = "n/a" if self.accuracy is None else f"{self.accuracy:.3f}"
            out.append(
                f"feedback: {self.feedback_sent} sent, {accepted} accepted; observed accuracy {accuracy} "
                f"({self.correct}/{self.correct + self.incorrect} rows)"
            )
        return out

    def as_json(self) -> dict[str, object]:
        return {
            "elapsed_seconds": round(self.elapsed, 3),
            "requests": self.requests,
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
            "p50_seconds": self.p50,
            "p99_seconds": self.p99,
            "feedback_sent": self.feedback_sent,
            "feedback_codes": {str(k): v for k, v in sorted(self.feedback_codes.items())},
            "correct": self.correct,
            "incorrect": self.incorrect,
            "accuracy": self.accuracy,
        }
