"""The stream pipeline: a source of frames -> an audio stream processor -> sinks.

One :class:`StreamPipeline` loop serves every mode: a recorded file paced by pts, the same
file with ``--fast``, and live devices (``livesense mic``). Only sources and sinks differ:
replay reads a :class:`~livesense.streaming.sources.FileReplaySource` and writes WAV + MP4;
``mic`` reads the capture ring and writes the headphone ring (+ a WAV with ``--record``).
Control frames (:class:`PoseUpdate`) travel in the same iteration and reach the processor
between chunks. Every sink is flushed and closed even when the run is interrupted, so partial
results are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from livesense.media.mp4 import Mp4Writer
from livesense.media.wav import WavWriter
from livesense.streaming.frames import AudioChunk, PoseUpdate, VideoFrame
from livesense.streaming.processor import StreamProcessor


@dataclass
class ReplayStats:
    """What a replay did, written to ``stats.json``."""

    input: str = ""
    sample_rate: int = 48000
    chunk_samples: int = 0
    chunks: int = 0
    samples_in: int = 0
    samples_out: int = 0
    video_frames: int = 0
    audio_seconds: float = 0.0
    process_seconds: float = 0.0
    wall_seconds: float = 0.0
    rtf: float = 0.0  # processing time / audio time (lower is better; < 1 keeps up)
    latency_ms: float = 0.0  # worst-case algorithmic wait of the audio processor
    chunk_ms_p50: float = 0.0
    chunk_ms_p99: float = 0.0
    max_lag_ms: float = 0.0  # worst lateness behind the real-time schedule (paced runs)
    realtime: bool = True
    interrupted: bool = False
    outputs: list[str] = field(default_factory=list)
    reasoner: dict = field(default_factory=dict)  # the video reasoner's counters, if one ran

    def save(self, path: str | Path) -> None:
        """Write these figures as JSON (``stats.json``)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


def _to_numpy(y: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    return np.ascontiguousarray(y, dtype=np.float32)


class Sink(Protocol):
    """Where processed audio (and passed-through video) goes."""

    def write_audio(self, audio: np.ndarray) -> None:
        """``audio``: float32 (channels, n), in stream order."""

    def write_video(self, frame: VideoFrame) -> None: ...

    def close(self) -> list[str]:
        """Flush and close; return the paths of the files written (if any)."""


class WavSink:
    """A WAV file of the processed audio, opened on the first write with its channel count."""

    def __init__(self, path: str | Path, sample_rate: int):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self._wav: WavWriter | None = None

    def write_audio(self, audio: np.ndarray) -> None:
        if self._wav is None:
            self._wav = WavWriter(self.path, self.sample_rate, audio.shape[0])
        self._wav.write(audio)

    def write_video(self, frame: VideoFrame) -> None:
        pass

    def close(self) -> list[str]:
        if self._wav is None:
            return []
        self._wav.close()
        return [str(self.path)]


class Mp4Sink:
    """An MP4 of the input video (if ``video_size``) with the processed audio as stereo AAC."""

    def __init__(
        self,
        path: str | Path,
        sample_rate: int,
        video_size: tuple[int, int] | None,
        video_fps: float = 30.0,
    ):
        self.path = Path(path)
        width, height = video_size if video_size else (None, None)
        self.video = width is not None
        self._mp4 = Mp4Writer(self.path, width, height, video_fps, sample_rate=sample_rate)

    def write_audio(self, audio: np.ndarray) -> None:
        self._mp4.write_audio(audio if audio.shape[0] == 2 else np.repeat(audio[:1], 2, axis=0))

    def write_video(self, frame: VideoFrame) -> None:
        if self.video:
            self._mp4.write_video(frame)

    def close(self) -> list[str]:
        self._mp4.close()
        return [str(self.path)]


def _pose(values: tuple[float, ...]):
    from livesense.audio.geometry import Pose

    return Pose(tuple(values[:3]), tuple(values[3:]))


class StreamPipeline:
    """Runs frames through ``processor`` into ``sinks`` (see the module docstring)."""

    def __init__(self, processor: StreamProcessor, sample_rate: int = 48000):
        self.processor = processor
        self.sample_rate = sample_rate

    def run(
        self,
        frames: Iterable[AudioChunk | VideoFrame | PoseUpdate],
        sinks: list[Sink],
        *,
        stats: ReplayStats | None = None,
        on_progress: Callable[[float], None] | None = None,
        on_frame: Callable[[AudioChunk | VideoFrame], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> ReplayStats:
        """Process ``frames`` until they end, ``stop()`` turns true (checked between frames,
        so no chunk is half-written) or Ctrl-C; ``on_frame`` sees every media frame first
        (the video reasoner's tap). The processor is flushed and the sinks closed in all
        cases; their files are listed in ``stats.outputs``."""
        stats = stats if stats is not None else ReplayStats(sample_rate=self.sample_rate)
        proc = self.processor
        wait = proc.latency + proc.granularity - 1  # worst-case, samples
        stats.latency_ms = 1000.0 * wait / self.sample_rate
        chunk_times: list[float] = []
        proc.reset()
        t_start = time.perf_counter()

        def emit(y: torch.Tensor | np.ndarray | None) -> None:
            if y is None or y.shape[-1] == 0:
                return
            out = _to_numpy(y)
            if out.ndim == 1:
                out = out[None]
            for sink in sinks:
                sink.write_audio(out)
            stats.samples_out += out.shape[-1]

        try:
            for frame in frames:
                if stop is not None and stop():
                    stats.interrupted = True
                    break
                if isinstance(frame, PoseUpdate):
                    if frame.speaker is not None:
                        proc.set_speaker_pose(_pose(frame.speaker), at_sample=frame.pts)  # type: ignore[attr-defined]
                    if frame.listener is not None:
                        proc.set_listener_pose(_pose(frame.listener), at_sample=frame.pts)  # type: ignore[attr-defined]
                    continue
                if on_frame is not None:
                    on_frame(frame)
                if isinstance(frame, VideoFrame):
                    for sink in sinks:
                        sink.write_video(frame)
                    stats.video_frames += 1
                    continue
                t0 = time.perf_counter()
                y = proc.step(torch.from_numpy(frame.data))
                chunk_times.append(time.perf_counter() - t0)
                emit(y)
                stats.chunks += 1
                stats.chunk_samples = max(stats.chunk_samples, frame.samples)
                stats.samples_in += frame.samples
                if on_progress is not None:
                    on_progress(frame.end / self.sample_rate)
        except KeyboardInterrupt:
            stats.interrupted = True
        finally:
            try:
                t0 = time.perf_counter()
                emit(proc.flush())
                chunk_times.append(time.perf_counter() - t0)
            finally:
                for sink in sinks:
                    stats.outputs.extend(sink.close())
                stats.wall_seconds = time.perf_counter() - t_start
                stats.process_seconds = float(sum(chunk_times))
                stats.audio_seconds = stats.samples_in / self.sample_rate
                if stats.audio_seconds > 0:
                    stats.rtf = stats.process_seconds / stats.audio_seconds
                if chunk_times:
                    ms = np.asarray(chunk_times) * 1000.0
                    stats.chunk_ms_p50 = float(np.percentile(ms, 50))
                    stats.chunk_ms_p99 = float(np.percentile(ms, 99))
        return stats


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
    ) -> ReplayStats:
        """Process ``frames`` until they end, ``stop()`` or Ctrl-C and write the outputs."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stats = ReplayStats(input=input_name, sample_rate=self.sample_rate, realtime=realtime)
        sinks: list[Sink] = [
            WavSink(self.out_dir / self.audio_name, self.sample_rate),
            Mp4Sink(self.out_dir / "output.mp4", self.sample_rate, self.video_size, self.video_fps),
        ]
        try:
            StreamPipeline(self.processor, self.sample_rate).run(
                frames, sinks, stats=stats, on_progress=on_progress, on_frame=on_frame, stop=stop
            )
        finally:
            if max_lag is not None:
                stats.max_lag_ms = 1000.0 * max_lag()
            stats_path = self.out_dir / "stats.json"
            stats.outputs.append(str(stats_path))
            stats.save(stats_path)
        return stats
