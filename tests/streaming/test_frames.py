from __future__ import annotations

import numpy as np
import pytest

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
