"""File sinks of the stream pipeline: the processed audio as WAV, and MP4 with the input video.

Each implements :class:`~livesense.streaming.pipeline.Sink`; ``close`` returns the files written.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from livesense.media.mp4 import Mp4Writer
from livesense.media.wav import WavWriter
from livesense.streaming.frames import VideoFrame

__all__ = ["Mp4Sink", "WavSink"]


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
