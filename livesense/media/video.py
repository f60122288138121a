"""Video decoding to RGB frames with pts in seconds, optional fps sampling and downscaling.

Damaged input follows the policy of :mod:`livesense.media.container`: every decodable frame is
yielded, undecodable packets are skipped, the reader's ``truncated`` flag is set and one warning
logged; :class:`~livesense.errors.MediaError` only when nothing at all could be decoded.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator

import av
import av.container
import av.stream
import numpy as np

from livesense.errors import MediaError
from livesense.media.container import PathLike, open_container, tolerant_frames
from livesense.streaming.frames import VideoFrame

log = logging.getLogger(__name__)

__all__ = ["VideoReader", "has_video", "iter_video_frames", "scaled_size"]


def _video_streams(container: av.container.InputContainer) -> list[av.VideoStream]:
    """Real video streams: cover art (an "attached picture" stream) does not count."""
    attached = int(av.stream.Disposition.attached_pic)
    return [s for s in container.streams.video if not int(s.disposition) & attached]


def scaled_size(width: int, height: int, max_size: int | None) -> tuple[int, int]:
    """(width, height) shrunk so the longer side is at most ``max_size``, keeping aspect."""
    if max_size is None or max(width, height) <= max_size:
        return width, height
    s = max_size / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


class VideoReader(Iterator[VideoFrame]):
    """Streaming decoder for a file's first video stream, yielding RGB :class:`VideoFrame` s.

    ``pts`` is the frame's time in seconds (stream time base) relative to the container's
    start; ``index`` counts yielded frames from 0. With ``fps`` set, frames are kept by pts so
    that at most one frame falls in each 1/fps slot (frames are dropped, never duplicated).
    ``max_size`` bounds the longer side (aspect kept, area interpolation).
    """

    def __init__(
        self,
        path: PathLike,
        fps: float | None = None,
        max_size: int | None = None,
        format: str | None = None,
    ) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        if max_size is not None and max_size <= 0:
            raise ValueError(f"max_size must be positive, got {max_size}")
        self.path = os.fspath(path)
        self.fps = fps
        self.max_size = max_size
        self.frames_read = 0
        self.frames_decoded = 0
        self.truncated = False
        self._container = open_container(self.path, format=format)
        streams = _video_streams(self._container)
        if not streams:
            self._container.close()
            raise MediaError(f"{self.path}: no video stream")
        self._stream = streams[0]
        cc = self._stream.codec_context
        self.source_width = int(cc.width)
        self.source_height = int(cc.height)
        self.width, self.height = scaled_size(self.source_width, self.source_height, max_size)
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.source_fps = float(rate) if rate else None
        start = self._container.start_time
        self._t0 = start / av.time_base if start is not None else 0.0
        self._gen = self._generate()

    def __iter__(self) -> VideoReader:
        return self

    def __next__(self) -> VideoFrame:
        return next(self._gen)

    def close(self) -> None:
        """Stop decoding and release the file."""
        self._gen.close()
        self._container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        errors = yield from tolerant_frames(self._container, self._stream, self.path)
        self.truncated = errors > 0

    def _generate(self) -> Iterator[VideoFrame]:
        last_slot: int | None = None
        last_pts = -math.inf
        step = 1.0 / self.source_fps if self.source_fps else 1.0 / 30.0
        try:
            for frame in self._decoded_frames():
                self.frames_decoded += 1
                t = frame.time
                if t is not None:
                    pts = t - self._t0
                else:  # no timestamp: assume the nominal rate
                    pts = last_pts + step if self.frames_decoded > 1 else 0.0
                if pts < last_pts:  # a broken timestamp; keep time moving forward
                    pts = last_pts + step
                last_pts = pts
                if self.fps is not None:
                    slot = math.floor(pts * self.fps + 1e-6)
                    if last_slot is not None and slot <= last_slot:
                        continue
                    last_slot = slot
                try:
                    rgb = frame.reformat(
                        width=self.width,
                        height=self.height,
                        format="rgb24",
                        interpolation="AREA" if self.width != frame.width else None,
                    ).to_ndarray()  # (H, W, 3) uint8
                except (av.FFmpegError, ValueError) as e:
                    log.debug("%s: cannot convert frame: %s", self.path, e)
                    self.truncated = True
                    continue
                yield VideoFrame(np.ascontiguousarray(rgb), float(pts), self.frames_read)
                self.frames_read += 1
        finally:
            self._container.close()
        if self.frames_decoded == 0:
            raise MediaError(f"{self.path}: no decodable video (corrupt or truncated file)")
        if self.truncated:
            log.warning(
                "%s: truncated or damaged file; decoded %d video frames up to %.2f s",
                self.path,
                self.frames_decoded,
                last_pts,
                extra={"once": ("truncated", self.path)},  # one warning per file (see audio)
            )


def iter_video_frames(
    path: PathLike,
    fps: float | None = None,
    max_size: int | None = None,
    *,
    format: str | None = None,
) -> VideoReader:
    """Decode a file's first video stream into RGB :class:`VideoFrame` s (see :class:`VideoReader`).

    Opening errors (missing file, not media, no video stream) are raised here as
    :class:`MediaError`, not on the first ``next``.
    """
    return VideoReader(path, fps=fps, max_size=max_size, format=format)


def has_video(path: PathLike) -> bool:
    """Whether a media file has a video stream (raises :class:`MediaError` if unreadable)."""
    with open_container(path) as c:
        return bool(_video_streams(c))
