"""The one signal handler of the command line: stop at the next safe point, then at once."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from livesense.cli.signals import graceful_stop


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_asks_to_stop_second_interrupts(sig: int) -> None:
    before = signal.getsignal(sig)
    woken: list[int] = []
    with graceful_stop(wake=lambda: woken.append(1)) as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), sig)
        assert stop.is_set() and woken == [1]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is before


def test_outside_the_main_thread_it_only_yields_the_event() -> None:
    seen: list[bool] = []

    def worker() -> None:
        with graceful_stop() as stop:
            seen.append(stop.is_set())

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == [False]
