"""A token bucket: ``burst`` events at once, then ``rate`` per second (questions, poses)."""

from __future__ import annotations

import time

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allows ``burst`` events at once and ``rate`` per second on average (monotonic clock)."""

    def __init__(self, burst: int, rate: float):
        self.burst = float(burst)
        self.rate = float(rate)
        self._tokens = float(burst)
        self._t = time.monotonic()

    def take(self) -> bool:
        """Spend one token; False (and nothing spent) when the bucket is empty."""
        now = time.monotonic()
        self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
        self._t = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
