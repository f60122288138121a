"""Fixed-length segments of stream time: frame pts -> segment index and bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Segment", "Segmenter"]


@dataclass
class Segment:
    """Segment ``index`` covers stream time [t0, t1); frames seen so far are counted."""

    index: int
    t0: float
    t1: float
    n_frames: int = 0
    first_pts: float = math.inf
    last_pts: float = -math.inf

    def add(self, pts: float) -> None:
        self.n_frames += 1
        self.first_pts = min(self.first_pts, pts)
        self.last_pts = max(self.last_pts, pts)


class Segmenter:
    """Splits stream time into segments of ``seconds``; :meth:`push` reports closed segments."""

    def __init__(self, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"segment length must be positive, got {seconds}")
        self.seconds = float(seconds)
        self.current: Segment | None = None

    def index(self, pts: float) -> int:
        return math.floor(pts / self.seconds + 1e-9)

    def bounds(self, index: int) -> tuple[float, float]:
        return index * self.seconds, (index + 1) * self.seconds

    def push(self, pts: float) -> Segment | None:
        """Account a frame at ``pts``; returns the segment it closed, if any."""
        k = self.index(pts)
        closed = None
        if self.current is not None and k != self.current.index:
            closed = self.current
            self.current = None
        if self.current is None:
            self.current = Segment(k, *self.bounds(k))
        self.current.add(pts)
        return closed

    def flush(self) -> Segment | None:
        """Close and return the open segment (end of stream)."""
        closed, self.current = self.current, None
        return closed
