"""The stream pipeline: a source of frames -> an audio stream processor -> sinks.

One :class:`StreamPipeline` loop serves every mode: a recorded file paced by pts, the same
file with ``--fast``, and live devices (``livesense mic``). Only sources and sinks differ:
replay reads a :class:`~livesense.live.replay.FileReplaySource` and writes WAV + MP4
(:mod:`livesense.media.sinks`); ``mic`` reads the capture ring and writes the headphone ring
(+ a WAV with ``--record``). Control frames (:class:`PoseUpdate`) travel in the same iteration
and reach the processor (a :class:`~livesense.streaming.processor.PoseTarget`) between chunks.
Every sink is flushed and closed even when the run is interrupted, so partial results are kept.
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

from livesense.stats import LatencySummary
from livesense.streaming.frames import AudioChunk, PoseUpdate, VideoFrame
from livesense.streaming.processor import PoseTarget, StreamProcessor, to_numpy

__all__ = ["PipelineStats", "Sink", "StreamPipeline"]


@dataclass
class PipelineStats:
    """What a run did (a replay writes it to ``stats.json``)."""

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
    engine: dict = field(default_factory=dict)  # the neural render engine's figures, if any

    def save(self, path: str | Path) -> None:
        """Write these figures as JSON (``stats.json``)."""
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")


class Sink(Protocol):
    """Where processed audio (and passed-through video) goes."""

    def write_audio(self, audio: np.ndarray) -> None:
        """``audio``: float32 (channels, n), in stream order."""

    def write_video(self, frame: VideoFrame) -> None: ...

    def close(self) -> list[str]:
        """Flush and close; return the paths of the files written (if any)."""


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
        stats: PipelineStats | None = None,
        on_progress: Callable[[float], None] | None = None,
        on_frame: Callable[[AudioChunk | VideoFrame], None] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> PipelineStats:
        """Process ``frames`` until they end, ``stop()`` turns true (checked between frames,
        so no chunk is half-written) or Ctrl-C; ``on_frame`` sees every media frame first
        (the video reasoner's tap). The processor is flushed and the sinks closed in all
        cases; their files are listed in ``stats.outputs``."""
        stats = stats if stats is not None else PipelineStats(sample_rate=self.sample_rate)
        proc = self.processor
        wait = proc.latency + proc.granularity - 1  # worst-case, samples
        stats.latency_ms = 1000.0 * wait / self.sample_rate
        chunk_times: list[float] = []
        proc.reset()
        t_start = time.perf_counter()

        def emit(y: torch.Tensor | np.ndarray | None) -> None:
            if y is None or y.shape[-1] == 0:
                return
            out = np.ascontiguousarray(to_numpy(y, np.float32))
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
                    if not isinstance(proc, PoseTarget):
                        raise TypeError(f"{type(proc).__name__} takes no pose updates")
                    proc.apply_pose(frame)
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
                ms = LatencySummary.of(chunk_times, 1000.0)
                if ms is not None:
                    stats.chunk_ms_p50, stats.chunk_ms_p99 = ms.p50, ms.p99
        return stats
