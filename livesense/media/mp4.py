"""File sinks: a streaming MP4 writer (H.264 + AAC) that always leaves a playable file."""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from fractions import Fraction
from types import TracebackType

import av
import av.container
import numpy as np

from livesense.errors import MediaError
from livesense.media.container import PathLike, media_error
from livesense.streaming.frames import AudioChunk, VideoFrame

log = logging.getLogger(__name__)

__all__ = ["Mp4Writer"]

VIDEO_TIME_BASE = Fraction(1, 90000)
AAC_FRAME = 1024


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


class Mp4Writer:
    """Streaming MP4 writer: H.264 (libx264, yuv420p) video and/or AAC audio.

    ``width=None`` writes audio only; ``audio_channels=0`` (or ``sample_rate=None``) writes video
    only. Odd frame sizes are made even (the last row/column is cropped). Video pts come from
    :attr:`VideoFrame.pts` (seconds, kept strictly increasing); audio pts are in samples and a
    gap is filled with silence (an overlap is dropped) so audio stays in sync with video; a jump
    longer than ``max_gap_seconds`` is treated as a discontinuity and not filled.
    PyAV's muxer interleaves the streams. :meth:`close` flushes both encoders and runs in the
    context manager's ``finally``, so a stream that ends early still gives a playable file.
    ``crf``/``preset`` tune libx264; ``threads=1`` makes the output byte-reproducible.
    All methods are thread-safe (an audio and a video worker may share one writer).
    """

    def __init__(
        self,
        path: PathLike,
        width: int | None,
        height: int | None,
        fps: float = 30.0,
        sample_rate: int | None = 48000,
        audio_channels: int = 2,
        *,
        crf: int = 23,
        preset: str = "veryfast",
        audio_bitrate: int = 128_000,
        max_gap_seconds: float = 600.0,
        threads: int = 0,
    ) -> None:
        self.path = os.fspath(path)
        self.has_video = width is not None
        self.has_audio = sample_rate is not None and audio_channels > 0
        if not (self.has_video or self.has_audio):
            raise ValueError("Mp4Writer needs video (width/height) or audio (sample_rate) or both")
        if self.has_video and (height is None or width <= 1 or height <= 1 or fps <= 0):
            raise ValueError(f"bad video geometry {width}x{height} @ {fps} fps")
        self.width = (width or 0) // 2 * 2
        self.height = (height or 0) // 2 * 2
        self.fps = fps
        self.sample_rate = sample_rate or 0
        self.audio_channels = audio_channels if self.has_audio else 0
        self.video_frames_written = 0
        self.audio_samples_written = 0  # samples handed to the encoder path (incl. gap fill)
        self._last_vpts = -1
        self._audio_encoded = 0  # samples given to the AAC encoder (its pts)
        self._pts_offset = 0  # shift applied after an over-long audio gap
        self.max_gap_seconds = max_gap_seconds
        self._lock = threading.Lock()
        self._closed = False
        try:
            self._container: av.container.OutputContainer = av.open(
                self.path, mode="w", format="mp4"
            )
        except (av.FFmpegError, OSError) as e:
            raise media_error(self.path, e, "cannot write") from None
        try:
            self._video: av.VideoStream | None = None
            self._audio: av.AudioStream | None = None
            if self.has_video:
                v = self._container.add_stream(
                    "libx264",
                    rate=Fraction(fps).limit_denominator(1001),
                    options={"crf": str(crf), "preset": preset},
                )
                v.width, v.height, v.pix_fmt = self.width, self.height, "yuv420p"
                v.codec_context.time_base = VIDEO_TIME_BASE
                v.codec_context.thread_count = threads  # 0 = auto; 1 = byte-reproducible
                self._video = v
            if self.has_audio:
                a = self._container.add_stream(
                    "aac", rate=self.sample_rate, layout=_layout(self.audio_channels)
                )
                a.bit_rate = audio_bitrate
                self._audio = a
                self._fifo = av.AudioFifo()
            self._container.start_encoding()  # the file exists (with a header) from here on
        except (av.FFmpegError, OSError, ValueError) as e:
            with contextlib.suppress(av.FFmpegError, OSError):
                self._container.close()
            action = "cannot write" if isinstance(e, OSError) else "cannot set up encoder"
            raise media_error(self.path, e, action) from None

    # ------------------------------------------------------------------ video

    def write_video(self, frame: VideoFrame | np.ndarray) -> None:
        """Encode one RGB frame; a bare (H, W, 3) array gets the next pts at ``fps``."""
        if self._video is None:
            raise ValueError(f"{self.path}: this Mp4Writer has no video stream")
        if isinstance(frame, VideoFrame):
            image, t = frame.image, frame.pts
        else:
            image, t = np.asarray(frame), None
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"video image must be (H, W, 3), got shape {image.shape}")
        h, w = image.shape[:2]
        if h in (self.height, self.height + 1) and w in (self.width, self.width + 1):
            image = image[: self.height, : self.width]  # odd -> even by cropping
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(image, dtype=np.uint8), "rgb24")
        if vf.width != self.width or vf.height != self.height:
            vf = vf.reformat(width=self.width, height=self.height)
        with self._lock:
            self._check_open()
            step = round(1 / (self.fps * VIDEO_TIME_BASE))
            pts = self._last_vpts + step if t is None else round(t / VIDEO_TIME_BASE)
            pts = max(pts, self._last_vpts + 1)
            self._last_vpts = pts
            vf.pts, vf.time_base = pts, VIDEO_TIME_BASE
            self._mux(self._video.encode(vf))
            self.video_frames_written += 1

    # ------------------------------------------------------------------ audio

    def write_audio(self, data: np.ndarray | AudioChunk, pts: int | None = None) -> None:
        """Append float32 (channels, n) audio; ``pts`` in samples (None = right after the last).

        An :class:`AudioChunk` brings its own pts and must be at the writer's sample rate.
        Mono input is copied to every channel and multichannel input averaged for mono output.
        """
        if self._audio is None:
            raise ValueError(f"{self.path}: this Mp4Writer has no audio stream")
        if isinstance(data, AudioChunk):
            if data.sample_rate != self.sample_rate:
                raise ValueError(
                    f"chunk is at {data.sample_rate} Hz, the writer at {self.sample_rate} Hz"
                )
            data, pts = data.data, data.pts if pts is None else pts
        x = np.asarray(data, dtype=np.float32)
        if x.ndim == 1:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"audio must be (channels, n), got shape {x.shape}")
        if x.shape[0] != self.audio_channels:
            if x.shape[0] == 1:
                x = np.repeat(x, self.audio_channels, axis=0)
            elif self.audio_channels == 1:
                x = x.mean(axis=0, keepdims=True)
            else:
                raise ValueError(f"expected {self.audio_channels} audio channels, got {x.shape[0]}")
        with self._lock:
            self._check_open()
            if pts is not None:
                gap = pts - self._pts_offset - self.audio_samples_written
                if gap > self.max_gap_seconds * self.sample_rate:  # a jump, not a gap
                    log.warning("%s: audio pts jumped by %d samples; not filled", self.path, gap)
                    self._pts_offset += gap
                    gap = 0
                if gap > 0:  # fill with silence, a second at a time
                    while gap > 0:
                        n = min(gap, self.sample_rate)
                        self._push_audio(np.zeros((self.audio_channels, n), np.float32))
                        gap -= n
                elif gap < 0:  # overlaps what was written: drop the overlap
                    x = x[:, -gap:]
            if x.shape[1]:
                self._push_audio(np.clip(np.nan_to_num(x, nan=0.0), -1.0, 1.0))

    def _push_audio(self, x: np.ndarray) -> None:
        af = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(x), format="fltp", layout=_layout(self.audio_channels)
        )
        af.sample_rate = self.sample_rate
        af.pts = None  # we number encoder frames ourselves
        self._fifo.write(af)
        self.audio_samples_written += x.shape[1]
        while self._fifo.samples >= AAC_FRAME:
            self._encode_audio(self._fifo.read(AAC_FRAME))

    def _encode_audio(self, af: av.AudioFrame | None) -> None:
        assert self._audio is not None
        if af is not None:
            af.pts = self._audio_encoded
            af.time_base = Fraction(1, self.sample_rate)
            self._audio_encoded += af.samples
        self._mux(self._audio.encode(af))

    # ------------------------------------------------------------------ lifecycle

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            self._container.mux(packets)
        except (av.FFmpegError, OSError) as e:
            raise media_error(self.path, e, "cannot write") from None

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError(f"{self.path}: Mp4Writer is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Flush both encoders and finish the file (idempotent; the file is closed regardless)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                if self._audio is not None:
                    rest = self._fifo.read()  # the last, shorter AAC frame
                    if rest is not None and rest.samples:
                        self._encode_audio(rest)
                    self._encode_audio(None)
                if self._video is not None:
                    self._mux(self._video.encode(None))
            finally:
                try:
                    self._container.close()
                except (av.FFmpegError, OSError) as e:
                    raise MediaError(f"{self.path}: cannot finish file: {e}") from None

    def __enter__(self) -> Mp4Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
