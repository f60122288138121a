"""Latest-N ring of timestamped items (video frames or any object), thread-safe.

Video may drop but never queue up: when the ring is full, :meth:`FrameRing.push` drops the
oldest item and counts it. Input comes from the network, so a frame whose pts goes backwards is
counted as ``late`` and discarded instead of raising. Slots are preallocated (write index modulo
capacity); popped slots are cleared so frames can be freed.

Every accepted item ends up exactly once in ``popped``, ``dropped`` (overflow), ``skipped``
(discarded by :meth:`FrameRing.pop_latest`) or is still held:
``pushed == popped + dropped + skipped + len(ring)``.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class FrameRingStats:
    """A consistent snapshot of a :class:`FrameRing`'s counters."""

    pushed: int  # accepted items
    popped: int  # returned by pop/get/pop_latest/drain
    dropped: int  # oldest items evicted by a push into a full ring
    skipped: int  # older items discarded by pop_latest(drop_older=True)
    late: int  # pushes rejected because their pts went backwards
    size: int  # items held now


class FrameRing(Generic[T]):
    """Keeps the latest ``capacity`` items with their pts (float seconds), oldest first."""

    def __init__(self, capacity: int):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self._capacity = int(capacity)
        self._items: list[T | None] = [None] * self._capacity
        self._pts: list[float] = [0.0] * self._capacity
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._closed = False
        self._reset()

    def _reset(self) -> None:
        self._head = 0  # slot of the oldest item
        self._size = 0
        self._last_pts = -math.inf  # newest accepted pts, kept across pops
        self._pushed = 0
        self._popped = 0
        self._dropped = 0
        self._skipped = 0
        self._late = 0

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def last_pts(self) -> float:
        """pts of the newest accepted item (``-inf`` before the first)."""
        with self._lock:
            return self._last_pts

    @property
    def pushed(self) -> int:
        return self.stats().pushed

    @property
    def popped(self) -> int:
        return self.stats().popped

    @property
    def dropped(self) -> int:
        return self.stats().dropped

    @property
    def skipped(self) -> int:
        return self.stats().skipped

    @property
    def late(self) -> int:
        return self.stats().late

    def __len__(self) -> int:
        with self._lock:
            return self._size

    def stats(self) -> FrameRingStats:
        with self._lock:
            return FrameRingStats(
                pushed=self._pushed,
                popped=self._popped,
                dropped=self._dropped,
                skipped=self._skipped,
                late=self._late,
                size=self._size,
            )

    def push(self, item: T, pts: float) -> bool:
        """Add ``item``; evicts (and counts) the oldest when full.

        Returns False, counting ``late``, if ``pts`` is older than the newest accepted pts
        (equal pts are accepted). A non-finite pts is a caller bug and raises ValueError.
        """
        pts = float(pts)
        if not math.isfinite(pts):
            raise ValueError(f"pts must be finite, got {pts}")
        with self._lock:
            if pts < self._last_pts:
                self._late += 1
                return False
            self._last_pts = pts
            if self._size == self._capacity:
                self._take_oldest()
                self._dropped += 1
            slot = (self._head + self._size) % self._capacity
            self._items[slot] = item
            self._pts[slot] = pts
            self._size += 1
            self._pushed += 1
            self._ready.notify()
        return True

    def pop(self) -> tuple[T, float] | None:
        """Remove and return the oldest ``(item, pts)``, or None when empty."""
        with self._lock:
            if self._size == 0:
                return None
            self._popped += 1
            return self._take_oldest()

    def get(self, timeout: float | None = None) -> tuple[T, float] | None:
        """Blocking :meth:`pop`: waits up to ``timeout`` s (None = forever, or until
        :meth:`close`) for an item; None if none came."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._size == 0:
                left = None if deadline is None else deadline - time.monotonic()
                if self._closed or (left is not None and left <= 0):
                    return None
                self._ready.wait(left)
            self._popped += 1
            return self._take_oldest()

    def pop_latest(self, *, drop_older: bool = True) -> tuple[T, float] | None:
        """Remove and return the newest ``(item, pts)``, or None when empty.

        ``drop_older=True`` (catch up to live) also discards every older item, counted in
        ``skipped``; with False the older items stay queued.
        """
        with self._lock:
            if self._size == 0:
                return None
            slot = (self._head + self._size - 1) % self._capacity
            out = (self._items[slot], self._pts[slot])
            self._items[slot] = None
            self._size -= 1
            self._popped += 1
            if drop_older:
                self._skipped += self._size
                while self._size:
                    self._take_oldest()
            return out  # type: ignore[return-value]

    def peek_latest(self) -> tuple[T, float] | None:
        """The newest ``(item, pts)`` without removing it, or None when empty."""
        with self._lock:
            if self._size == 0:
                return None
            slot = (self._head + self._size - 1) % self._capacity
            return self._items[slot], self._pts[slot]  # type: ignore[return-value]

    def drain(self) -> list[tuple[T, float]]:
        """Remove and return all items, oldest first (counted as popped)."""
        with self._lock:
            out = [self._take_oldest() for _ in range(self._size)]
            self._popped += len(out)
            return out

    def clear(self) -> None:
        """Start a new stream: forget items, counters and the last pts."""
        with self._lock:
            self._items[:] = [None] * self._capacity
            self._reset()

    def close(self) -> None:
        """Wake blocked :meth:`get` calls; from now on ``get`` never waits."""
        with self._lock:
            self._closed = True
            self._ready.notify_all()

    def _take_oldest(self) -> tuple[T, float]:
        """Remove the oldest item (lock held, size > 0); counters are the caller's business."""
        slot = self._head
        out = (self._items[slot], self._pts[slot])
        self._items[slot] = None
        self._head = (slot + 1) % self._capacity
        self._size -= 1
        return out  # type: ignore[return-value]
