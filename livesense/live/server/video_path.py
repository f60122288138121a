"""One session's video path: JPEG frames -> a latest-N ring -> decode + reasoner.

Frames wait in a small :class:`FrameRing` (the oldest dropped and counted) and are decoded and
handed to the session's :class:`~livesense.live.engines.ReasonerHandle` on the shared video
thread pool, at most one job per session at a time, so a slow reasoner only drops its own
session's frames. A reasoner that raises stops video reasoning for the session (one
``reasoner_failed`` error event says so; later frames are dropped, later questions get an
error); the session's audio goes on.
"""

from __future__ import annotations

import io
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from livesense.buffers import FrameRing
from livesense.live.engines import ReasonerHandle
from livesense.live.server.audio_path import Emit
from livesense.live.server.config import SessionLimits
from livesense.live.server.events import ErrorEvent, VideoStats
from livesense.live.server.protocol import ErrorCode, ProtocolError
from livesense.streaming.frames import Question, VideoFrame

__all__ = ["VideoPath"]

log = logging.getLogger(__name__)


class VideoPath:
    """JPEG frames -> latest-N ring -> decode + reasoner on the shared video pool."""

    def __init__(
        self,
        handle: ReasonerHandle,
        pool: ThreadPoolExecutor,
        limits: SessionLimits,
        emit: Emit,
    ):
        self.handle = handle
        self._pool = pool
        self.limits = limits
        self._emit = emit
        self.ring: FrameRing[bytes] = FrameRing(limits.video_ring)
        self._lock = threading.Lock()
        self._in_flight = False
        self.closed = False
        self.failed = False  # the reasoner raised: video reasoning stopped in this session
        self._dropped_after_failure = 0
        self.frames_received = 0
        self.frames_processed = 0
        self.bad_frames = 0
        self._index = 0

    def push_frame(self, jpeg: bytes, pts_us: int) -> None:
        """Queue a frame (event loop); raises ProtocolError for an out-of-order pts."""
        if len(jpeg) > self.limits.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"video frame of {len(jpeg)} bytes exceeds {self.limits.max_frame_bytes}",
            )
        if not jpeg:
            raise ProtocolError(ErrorCode.BAD_SIZE, "empty video frame")
        self.frames_received += 1
        if self.failed:
            self._dropped_after_failure += 1
            return
        if not self.ring.push(jpeg, pts_us / 1e6):
            raise ProtocolError(
                ErrorCode.OUT_OF_ORDER, f"video frame pts {pts_us} us goes backwards; dropped"
            )
        with self._lock:
            if self._in_flight or self.closed:
                return
            self._in_flight = True
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        while True:
            with self._lock:
                item = None if self.closed else self.ring.pop_latest(drop_older=True)
                if item is None:
                    self._in_flight = False
                    return
            jpeg, pts = item
            try:
                with Image.open(io.BytesIO(jpeg)) as im:
                    if im.width * im.height > self.limits.max_image_pixels:
                        raise ValueError(f"image of {im.width}x{im.height} pixels is too large")
                    img = np.asarray(im.convert("RGB"))
            except Exception as e:
                self.bad_frames += 1
                self._emit(ErrorEvent(ErrorCode.BAD_IMAGE, f"cannot decode video frame: {e}"))
                continue
            try:
                self.handle.submit_frame(VideoFrame(img, pts, self._index))
            except Exception as e:
                self._fail(e)
                continue
            self._index += 1
            self.frames_processed += 1

    def ask(self, q: Question) -> None:
        """Queue a question; raises ProtocolError(reasoner_failed) once reasoning stopped."""
        if self.failed:
            raise ProtocolError(
                ErrorCode.REASONER_FAILED, "video reasoning stopped in this session"
            )
        self._pool.submit(self._ask, q)

    def _ask(self, q: Question) -> None:
        try:
            self.handle.ask(q)
        except Exception as e:
            self._fail(e)

    def _fail(self, exc: Exception) -> None:
        """The reasoner raised: say so once and stop video reasoning for this session."""
        log.exception("session video reasoner failed")
        with self._lock:
            told, self.failed, self.closed = self.failed, True, True
            self.ring.clear()
        if not told:
            msg = f"video reasoning stopped: {exc}; audio goes on"
            self._emit(ErrorEvent(ErrorCode.REASONER_FAILED, msg))

    def stop(self) -> None:
        with self._lock:
            self.closed = True

    def stats(self) -> VideoStats:
        if self.handle.stopped and not self.failed:  # a worker died between two frames
            self._fail(RuntimeError("the video reasoner stopped"))
        rs = self.ring.stats()
        return VideoStats(
            frames_received=self.frames_received,
            frames_processed=self.frames_processed,
            frames_dropped=rs.dropped + rs.skipped + self._dropped_after_failure,
            frames_late=rs.late,
            bad_frames=self.bad_frames,
            evaluations=int(self.handle.evaluations),
        )
