"""The replay pipeline: a source of frames -> an audio stream processor -> file sinks.

The same loop serves paced replay (the default) and ``--fast``; only the source's pacer
differs. Every output is flushed and closed even when the run is interrupted, so partial
results are kept.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from livesense.audio.io import WavWriter
from livesense.streaming.frames import AudioChunk, VideoFrame
from livesense.streaming.processor import StreamProcessor
from livesense.streaming.sinks import Mp4Writer


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


class ReplayPipeline:
    """Runs frames through ``processor`` and writes ``audio_name`` (wav), ``output.mp4``
    (input video + processed audio as stereo AAC) and ``stats.json`` into ``out_dir``."""

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
    ) -> ReplayStats:
        """Process ``frames`` until they end or Ctrl-C; ``on_frame`` sees every frame first
        (the video reasoner's tap)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stats = ReplayStats(input=input_name, sample_rate=self.sample_rate, realtime=realtime)
        wait = self.processor.latency + self.processor.granularity - 1  # worst-case, samples
        stats.latency_ms = 1000.0 * wait / self.sample_rate
        wav_path, mp4_path = self.out_dir / self.audio_name, self.out_dir / "output.mp4"
        width, height = self.video_size if self.video_size else (None, None)
        chunk_times: list[float] = []
        wav: WavWriter | None = None
        mp4 = Mp4Writer(mp4_path, width, height, self.video_fps, sample_rate=self.sample_rate)
        self.processor.reset()
        t_start = time.perf_counter()

        def emit(y: torch.Tensor | np.ndarray | None) -> None:
            nonlocal wav
            if y is None or y.shape[-1] == 0:
                return
            out = _to_numpy(y)
            if out.ndim == 1:
                out = out[None]
            if wav is None:
                wav = WavWriter(wav_path, self.sample_rate, out.shape[0])
            wav.write(out)
            mp4.write_audio(out if out.shape[0] == 2 else np.repeat(out[:1], 2, axis=0))
            stats.samples_out += out.shape[-1]

        try:
            for frame in frames:
                if on_frame is not None:
                    on_frame(frame)
                if isinstance(frame, VideoFrame):
                    if width is not None:
                        mp4.write_video(frame)
                        stats.video_frames += 1
                    continue
                t0 = time.perf_counter()
                y = self.processor.step(torch.from_numpy(frame.data))
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
                emit(self.processor.flush())
                chunk_times.append(time.perf_counter() - t0)
            finally:
                if wav is not None:
                    wav.close()
                    stats.outputs.append(str(wav_path))
                mp4.close()
                stats.outputs.append(str(mp4_path))
                stats.wall_seconds = time.perf_counter() - t_start
                stats.process_seconds = float(sum(chunk_times))
                stats.audio_seconds = stats.samples_in / self.sample_rate
                if stats.audio_seconds > 0:
                    stats.rtf = stats.process_seconds / stats.audio_seconds
                if chunk_times:
                    ms = np.asarray(chunk_times) * 1000.0
                    stats.chunk_ms_p50 = float(np.percentile(ms, 50))
                    stats.chunk_ms_p99 = float(np.percentile(ms, 99))
                if max_lag is not None:
                    stats.max_lag_ms = 1000.0 * max_lag()
                stats_path = self.out_dir / "stats.json"
                stats.outputs.append(str(stats_path))
                stats.save(stats_path)
        return stats
