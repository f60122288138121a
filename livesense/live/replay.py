"""File replay: a recorded file as a live stream, through the stream pipeline into files.

:class:`FileReplaySource` decodes ahead on a thread into a bounded queue (about a second) and
releases frames at ``start + pts`` through a :class:`PtsPacer` (unpaced with ``--fast``).
:class:`ReplayPipeline` runs them through a processor into ``binaural.wav`` (or ``audio.wav``),
``output.mp4`` and ``stats.json``.
"""

from __future__ import annotations

import heapq
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from livesense.errors import MediaError
from livesense.media.audio import iter_audio_chunks
from livesense.media.container import probe
from livesense.media.sinks import Mp4Sink, WavSink
from livesense.media.video import iter_video_frames
from livesense.streaming.clock import PtsPacer
from livesense.streaming.frames import AudioChunk, VideoFrame
from livesense.streaming.pipeline import PipelineStats, Sink, StreamPipeline
from livesense.streaming.processor import StreamProcessor

__all__ = ["FileReplaySource", "ReplayConfig", "ReplayPipeline"]

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


class ReplayPipeline:
    """A recorded file through a :class:`StreamPipeline` into ``audio_name`` (WAV),
    ``output.mp4`` (input video + processed audio as stereo AAC) and ``stats.json``."""

    def __init__(
        self,
        processor: StreamProcessor,
        out_dir: str | Path,
        sample_rate: int = 48000,
        audio_name: str = "audio.wav",
        video_size: tuple[int, int] | None = None,
        video_fps: float = 30.0,
    ):
        self.processor = processor
        self.out_dir = Path(out_dir)
        self.sample_rate = sample_rate
        self.audio_name = audio_name
        self.video_size = video_size
        self.video_fps = video_fps

    def run(
        self,
        frames: Iterable[AudioChunk | VideoFrame],
        *,
        input_name: str = "",
        realtime: bool = True,
        on_progress: Callable[[float], None] | None = None,
        max_lag: Callable[[], float] | None = None,
        on_frame: Callable[[AudioChunk | VideoFrame], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> PipelineStats:
        """Process ``frames`` until they end, ``stop()`` or Ctrl-C and write the outputs."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stats = PipelineStats(input=input_name, sample_rate=self.sample_rate, realtime=realtime)
        sinks: list[Sink] = [
            WavSink(self.out_dir / self.audio_name, self.sample_rate),
            Mp4Sink(self.out_dir / "output.mp4", self.sample_rate, self.video_size, self.video_fps),
        ]
        try:
            StreamPipeline(self.processor, self.sample_rate).run(
                frames, sinks, stats=stats, on_progress=on_progress, on_frame=on_frame, stop=stop
            )
        except Exception:
            if stats.samples_in == 0 and stats.video_frames == 0:
                # Failed before any media (an empty or undecodable file): leave no outputs
                # behind that would pass for a run (and make the next one need --force).
                for path in stats.outputs:
                    Path(path).unlink(missing_ok=True)
                stats.outputs.clear()
                raise
            self._save(stats, max_lag)
            raise
        self._save(stats, max_lag)
        return stats

    def _save(self, stats: PipelineStats, max_lag: Callable[[], float] | None) -> None:
        if max_lag is not None:
            stats.max_lag_ms = 1000.0 * max_lag()
        stats_path = self.out_dir / "stats.json"
        stats.outputs.append(str(stats_path))
        stats.save(stats_path)
