"""A session's video path when its reasoner dies: said once, frames dropped, audio untouched."""

from __future__ import annotations

import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from livesense.errors import LivesenseError
from livesense.live.engines import VideoReasonerEngine
from livesense.live.server.config import SessionLimits
from livesense.live.server.events import ErrorEvent
from livesense.live.server.protocol import ErrorCode, ProtocolError
from livesense.live.server.video_path import VideoPath
from livesense.streaming.frames import Question, VideoFrame
from livesense.video.reasoner import ReasonerStats


class _DeadReasoner:
    """A VideoReasoner whose workers died (``stopped`` before anyone closed it)."""

    stopped = True

    def submit_frame(self, frame: VideoFrame) -> bool:
        raise AssertionError("never reached: the handle checks stopped first")

    def finish(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass

    def stats(self) -> ReasonerStats:
        return ReasonerStats()


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def test_a_stopped_reasoner_handle_raises_instead_of_swallowing() -> None:
    handle = VideoReasonerEngine(lambda on_event: _DeadReasoner()).open_session(print)  # type: ignore[arg-type, return-value]
    assert handle.stopped
    frame = VideoFrame(np.zeros((4, 4, 3), np.uint8), 0.0, 0)
    with pytest.raises(LivesenseError, match="video reasoner stopped"):
        handle.submit_frame(frame)
    with pytest.raises(LivesenseError, match="video reasoner stopped"):
        handle.ask(Question("what?", 0.0, "q1"))


def test_video_path_reports_a_dead_reasoner_once_and_drops_later_frames() -> None:
    out: list = []
    handle = VideoReasonerEngine(lambda on_event: _DeadReasoner()).open_session(out.append)  # type: ignore[arg-type, return-value]
    with ThreadPoolExecutor(1) as pool:
        path = VideoPath(handle, pool, SessionLimits(), out.append)
        path.push_frame(_jpeg(), 0)
        deadline = time.monotonic() + 5
        while not path.failed and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(1, 4):
            path.push_frame(_jpeg(), i * 100_000)
        with pytest.raises(ProtocolError) as e:
            path.ask(Question("still there?", 0.4, "q2"))
        assert e.value.code == ErrorCode.REASONER_FAILED
    errors = [m for m in out if isinstance(m, ErrorEvent)]
    assert [m.code for m in errors] == [ErrorCode.REASONER_FAILED]
    assert "video reasoning stopped" in errors[0].message
    s = path.stats()
    assert (s.frames_received, s.frames_processed, s.frames_dropped) == (4, 0, 3)
