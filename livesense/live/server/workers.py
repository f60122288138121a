"""The shared audio worker threads: every session's pending audio, round-robin.

Sessions are served one packet per turn, so a heavy session cannot starve the others; a
renderer that raises ends that session's audio (it is told why), never a worker.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Protocol

__all__ = ["AudioWorkers", "Schedulable"]

log = logging.getLogger(__name__)


class Schedulable(Protocol):
    """What the workers serve (an :class:`~livesense.live.server.audio_path.AudioPath`)."""

    session_id: str
    scheduled: bool
    closed: bool

    def has_pending(self) -> bool: ...

    def process_one(self) -> None: ...

    def fail(self, exc: BaseException) -> None: ...


class AudioWorkers:
    """Threads that render sessions' pending audio, round-robin, one packet per turn."""

    def __init__(self, threads: int = 2):
        self._ready: deque[Schedulable] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._threads = [
            threading.Thread(target=self._run, name=f"audio-worker-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for t in self._threads:
            t.start()

    def schedule(self, path: Schedulable) -> None:
        """Queue ``path`` for a turn unless it is already queued or being served."""
        with self._cond:
            if not path.scheduled and not path.closed:
                path.scheduled = True
                self._ready.append(path)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                path = self._ready.popleft()
            try:
                path.process_one()
            except Exception as e:  # a renderer bug ends that session's audio, not the worker
                log.exception("audio worker: session %s failed", path.session_id)
                path.fail(e)
            with self._cond:
                if path.has_pending() and not path.closed:
                    self._ready.append(path)
                    self._cond.notify()
                else:
                    path.scheduled = False
