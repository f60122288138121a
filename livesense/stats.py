"""Latency summaries: the p50 / p99 / max every stats report and benchmark prints."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

__all__ = ["LatencySummary"]


@dataclass(frozen=True)
class LatencySummary:
    """Median, 99th percentile and maximum of ``n`` durations (in the unit they were given)."""

    p50: float
    p99: float
    max: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float], scale: float = 1.0) -> LatencySummary | None:
        """The summary of ``values`` times ``scale`` (e.g. 1000 for seconds -> ms); None when
        there are none."""
        a = np.fromiter(values, dtype=np.float64) * scale
        if a.size == 0:
            return None
        p50, p99 = np.percentile(a, [50, 99])
        return cls(float(p50), float(p99), float(a.max()), int(a.size))

    def to_json(self, digits: int | None = None) -> dict[str, float]:
        """``{"p50", "p99", "max"}``, rounded to ``digits`` when given."""
        out = {"p50": self.p50, "p99": self.p99, "max": self.max}
        return out if digits is None else {k: round(v, digits) for k, v in out.items()}
