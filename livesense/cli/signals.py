"""The one signal handler of the command line: stop at the next safe point, then at once.

The first SIGINT (Ctrl-C) or SIGTERM (``kill``, a job scheduler) asks the running command to
stop between two units of work (a replay chunk, a training step) so every output stays
consistent and is kept; a second one interrupts at once (``KeyboardInterrupt``). SIGINT is
armed even when inherited ignored (jobs started with ``&`` by a non-interactive shell).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["graceful_stop"]


@contextmanager
def graceful_stop(wake: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """Within the block, SIGINT/SIGTERM set the yielded event (and call ``wake`` to cut a wait
    short); a second signal raises ``KeyboardInterrupt``. Outside the main thread it only yields
    the event. The previous handlers are restored afterwards."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        if wake is not None:
            wake()

    old: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
