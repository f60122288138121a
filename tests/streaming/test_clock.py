"""PtsPacer: one clock per session, release at start + pts, never paced twice."""

from __future__ import annotations

import pytest

from livesense.streaming.clock import PtsPacer


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.now += s


def test_pacer_releases_at_start_plus_pts():
    t = FakeTime()
    p = PtsPacer(clock=t.clock, sleep=t.sleep)
    p.wait(0.0)  # starts the clock
    p.wait(0.5)
    assert t.slept == [pytest.approx(0.5)]
    t.now += 0.2  # processing took 0.2 s
    p.wait(1.0)
    assert t.slept[-1] == pytest.approx(0.3)
    t.now += 2.0  # fell behind: no sleep, lag recorded
    p.wait(1.5)
    assert len(t.slept) == 2 and p.max_lag == pytest.approx(1.5)


def test_pacer_fast_and_speed():
    t = FakeTime()
    p = PtsPacer(realtime=False, clock=t.clock, sleep=t.sleep)
    p.wait(0.0)
    p.wait(10.0)
    assert t.slept == []
    p2 = PtsPacer(speed=2.0, clock=t.clock, sleep=t.sleep)
    p2.wait(1.0)
    p2.wait(2.0)
    assert t.slept == [pytest.approx(0.5)]
    with pytest.raises(ValueError):
        PtsPacer(speed=0)
