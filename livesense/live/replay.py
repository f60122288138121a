"""Frame sources. A recorded file is replayed as a live stream: decoded ahead on a thread
into a bounded queue (about a second), then released at ``start + pts`` by a :class:`PtsPacer`.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from livesense.media.audio import iter_audio_chunks
from livesense.media.container import probe
from livesense.media.video import iter_video_frames
from livesense.streaming.clock import PtsPacer
from livesense.streaming.frames import AudioChunk, VideoFrame

_END = object()


def _frame_time(frame: AudioChunk | VideoFrame) -> float:
    return frame.time


@dataclass(frozen=True)
class ReplayConfig:
    """How a recorded file is replayed."""

    sample_rate: int = 48000
    chunk_samples: int = 480  # 10 ms at 48 kHz
    video: bool = True
    video_fps: float | None = None  # None keeps the file's rate
    realtime: bool = True
    decode_ahead_s: float = 1.0


class FileReplaySource:
    """Audio chunks and video frames of one file, merged in pts order and paced by pts.

    Iterating yields :class:`AudioChunk` and :class:`VideoFrame` objects. Decoding runs ahead
    on a daemon thread, bounded to ``decode_ahead_s`` of media; a decode error is re-raised in
    the consumer. ``close()`` stops the decoder early (e.g. on Ctrl-C).
    """

    def __init__(self, path: str, config: ReplayConfig | None = None):
        self.path = str(path)
        self.config = config or ReplayConfig()
        self.info = probe(self.path)  # raises MediaError early for bad input
        if self.info.audio is None:
            from livesense.errors import MediaError

            raise MediaError(f"{self.path}: no audio stream to replay")
        self.has_video = self.config.video and self.info.video is not None
        self.pacer = PtsPacer(realtime=self.config.realtime)
        chunk_s = self.config.chunk_samples / self.config.sample_rate
        fps = (self.info.video.fps if self.has_video and self.info.video.fps else 30.0) or 30.0
        per_s = 1.0 / chunk_s + (fps if self.has_video else 0.0)
        self._queue: queue.Queue = queue.Queue(
            maxsize=max(8, int(per_s * self.config.decode_ahead_s))
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def duration(self) -> float:
        return float(self.info.duration or 0.0)

    def _frames(self) -> Iterator[AudioChunk | VideoFrame]:
        cfg = self.config
        audio = iter_audio_chunks(
            self.path, sample_rate=cfg.sample_rate, chunk_samples=cfg.chunk_samples
        )
        if not self.has_video:
            yield from audio
            return
        video = iter_video_frames(self.path, fps=cfg.video_fps)
        yield from heapq.merge(audio, video, key=_frame_time)

    def _decode(self) -> None:
        try:
            for frame in self._frames():
                while not self._stop.is_set():
                    try:
                        self._queue.put(frame, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
        except BaseException as exc:  # re-raised in the consumer thread
            self._error = exc
        finally:
            while True:
                try:
                    self._queue.put(_END, timeout=0.1)
                    break
                except queue.Full:
                    if self._stop.is_set():
                        break

    def __iter__(self) -> Iterator[AudioChunk | VideoFrame]:
        self._thread = threading.Thread(target=self._decode, name="livesense-decode", daemon=True)
        self._thread.start()
        try:
            while True:
                item = self._queue.get()
                if item is _END:
                    if self._error is not None:
                        raise self._error
                    return
                self.pacer.wait(item.time)
                yield item
        finally:
            self.close()

    def close(self) -> None:
        self._stop.set()
        self.pacer.cancel()
        if self._thread is not None and self._thread is not threading.current_thread():
            # Drain so a blocked producer can see the stop flag.
            try:
                while True:
                    self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(timeout=2.0)
