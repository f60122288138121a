from __future__ import annotations

import numpy as np
import pytest

from livesense.streaming.clock import PtsPacer
from livesense.streaming.frames import AudioChunk, PoseUpdate, TextEvent, VideoFrame


def test_audio_chunk_times():
    c = AudioChunk(np.zeros((2, 480), np.float32), pts=960, sample_rate=48000)
    assert (c.channels, c.samples, c.end) == (2, 480, 1440)
    assert c.time == pytest.approx(0.02)


def test_frame_validation():
    with pytest.raises(ValueError, match="channels, samples"):
        AudioChunk(np.zeros(480, np.float32), pts=0, sample_rate=48000)
    with pytest.raises(ValueError, match="sample_rate"):
        AudioChunk(np.zeros((1, 4), np.float32), pts=0, sample_rate=0)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        VideoFrame(np.zeros((4, 4), np.uint8), pts=0.0)
    with pytest.raises(ValueError, match="7 numbers"):
        PoseUpdate(pts=0, speaker=(1.0, 0.0, 0.0))


def test_text_event_json():
    e = TextEvent("answer", "a ball", 0.0, 3.5, id="q1", question="what moves?")
    assert e.to_json() == {
        "type": "answer",
        "text": "a ball",
        "t0": 0.0,
        "t1": 3.5,
        "id": "q1",
        "question": "what moves?",
    }
    assert "id" not in TextEvent("note", "x", 0, 1).to_json()


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
