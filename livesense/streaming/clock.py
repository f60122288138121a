"""One clock per session: release frames at ``start + pts`` (replay) or not at all (fast/live)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class PtsPacer:
    """Paces a recorded stream by presentation time.

    ``wait(t)`` blocks until ``t`` seconds of stream time have elapsed on the wall clock since
    the first call (the clock starts on first use, so decode-ahead time is not counted). With
    ``realtime=False`` it never waits. Live devices are already paced by their hardware and must
    use ``realtime=False`` so they are never paced twice.
    """

    def __init__(
        self,
        realtime: bool = True,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ):
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self.realtime = realtime
        self.speed = speed
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or (lambda s: self._stop.wait(s))
        self._start: float | None = None
        self._first_pts: float = 0.0
        self.max_lag = 0.0  # worst lateness seen (seconds): how far the consumer fell behind

    def wait(self, pts: float) -> None:
        """Block until stream time ``pts`` (seconds) is due."""
        if not self.realtime:
            return
        now = self._clock()
        if self._start is None:
            self._start, self._first_pts = now, pts
            return
        due = self._start + (pts - self._first_pts) / self.speed
        delay = due - now
        if delay > 0:
            self._sleep(delay)
        else:
            self.max_lag = max(self.max_lag, -delay)

    def elapsed(self) -> float:
        """Wall seconds since the clock started (0 before the first frame)."""
        return 0.0 if self._start is None else self._clock() - self._start

    def cancel(self) -> None:
        """Wake any waiter now (used on stop/Ctrl-C)."""
        self._stop.set()
