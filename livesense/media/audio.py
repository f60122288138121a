"""Streaming audio decoding and resampling (PyAV / libswresample) into fixed-size chunks.

Damaged input follows the policy of :mod:`livesense.media.container`.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Iterator

import av
import numpy as np

from livesense.errors import MediaError
from livesense.media.container import (
    PathLike,
    layout_name,
    open_container,
    stream_duration,
    tolerant_frames,
)
from livesense.streaming.frames import AudioChunk

log = logging.getLogger(__name__)

__all__ = ["AudioReader", "iter_audio_chunks", "read_audio"]


def _wav_declared_seconds(path: str) -> float | None:
    """The duration a RIFF/WAVE header declares when the file is shorter than that (a cut
    recording), else None (complete, streamed with an unknown size, or not a WAV)."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, block, rate = 12, 0, 0
    while pos + 8 <= len(head):
        tag, n = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if tag == b"fmt " and pos + 22 <= len(head):
            rate = struct.unpack("<I", head[pos + 12 : pos + 16])[0]
            block = struct.unpack("<H", head[pos + 20 : pos + 22])[0]
        if tag == b"data":
            if n in (0, 0xFFFFFFFF) or size >= pos + 8 + n:  # 0/~0: streamed, unknown
                return None
            return n / (block * rate) if block and rate else 0.0
        pos += 8 + n + (n & 1)
    return None


class AudioReader(Iterator[AudioChunk]):
    """Streaming decoder for a file's first audio stream, yielding fixed-size chunks.

    Decodes with PyAV, resamples with libswresample to ``sample_rate`` (float, planar), mixes to
    ``channels`` (mono = mean of the source channels, so a centred signal keeps its level), and
    cuts into ``chunk_samples`` chunks whose ``pts`` count samples from the first decoded one;
    the last chunk may be shorter and no sample is lost (AAC end padding past an MP4's declared
    duration is dropped, so a 10 s clip gives exactly 10 s). Opening errors are raised at
    construction; see the module docstring for the truncation policy (``truncated``).
    """

    def __init__(
        self,
        path: PathLike,
        sample_rate: int = 48000,
        chunk_samples: int = 480,
        channels: int = 1,
        format: str | None = None,
    ) -> None:
        if sample_rate <= 0 or chunk_samples <= 0 or channels <= 0:
            raise ValueError("sample_rate, chunk_samples and channels must be positive")
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.chunk_samples = chunk_samples
        self.channels = channels
        self.samples_read = 0
        self.truncated = False
        self._container = open_container(self.path, format=format)
        if not self._container.streams.audio:
            self._container.close()
            raise MediaError(f"{self.path}: no audio stream")
        self._stream = self._container.streams.audio[0]
        cc = self._stream.codec_context
        self.source_rate = int(cc.sample_rate)
        self.source_channels = int(cc.channels)
        self.declared_duration = stream_duration(self._stream, self._container)
        # FFmpeg clamps a WAV's duration to the file size, so read its header ourselves.
        self._cut_wav = (
            _wav_declared_seconds(self.path) if self._container.format.name == "wav" else None
        )
        self._gen = self._generate()

    def __iter__(self) -> AudioReader:
        return self

    def __next__(self) -> AudioChunk:
        return next(self._gen)

    def close(self) -> None:
        """Stop decoding and release the file."""
        self._gen.close()
        self._container.close()

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _mix(self, x: np.ndarray) -> np.ndarray:
        """(C_in, n) -> (channels, n)."""
        if x.shape[0] == self.channels:
            return x
        if self.channels == 1:
            return x.mean(axis=0, keepdims=True)
        if x.shape[0] == 1:
            return np.repeat(x, self.channels, axis=0)
        raise AssertionError("other layouts are mixed by the resampler")

    def _decoded_frames(self) -> Iterator[av.AudioFrame]:
        """Decoded frames; skips undecodable packets and stops at a demux error."""
        errors = yield from tolerant_frames(self._container, self._stream, self.path)
        self.truncated = errors > 0

    def _end_trim_limit(self) -> int | None:
        """Output samples in the declared duration of an MP4-family stream, else None."""
        if not self._container.format.name.startswith("mov") or self._stream.duration is None:
            return None
        return round(self._stream.duration * self._stream.time_base * self.sample_rate)

    def _generate(self) -> Iterator[AudioChunk]:
        # Same-layout resampling (numpy mixes mono/stereo), or swresample's matrix for others.
        keep_layout = self.channels == 1 or self.source_channels in (1, self.channels)
        resampler = av.AudioResampler(
            format="fltp",
            layout=None if keep_layout else layout_name(self.channels),
            rate=self.sample_rate,
        )
        buf = np.zeros((self.channels, self.chunk_samples), np.float32)  # pending partial chunk
        fill = 0
        pts = 0
        # MP4 keeps AAC's end padding in the stream; ffmpeg trims the start (priming) but not
        # the end. Hold back samples past the declared duration and drop them at the end if
        # they are no more than two codec frames; release them if more come (bad metadata).
        limit = self._end_trim_limit()
        taken = 0
        held: list[np.ndarray] = []
        tolerance = 2 * 1024 * self.sample_rate // max(1, self.source_rate) + 2

        def chunk(x: np.ndarray) -> Iterator[AudioChunk]:
            nonlocal fill, pts
            i = 0
            n = x.shape[1]
            while i < n:
                take = min(self.chunk_samples - fill, n - i)
                buf[:, fill : fill + take] = x[:, i : i + take]
                fill += take
                i += take
                if fill == self.chunk_samples:
                    yield AudioChunk(buf.copy(), pts, self.sample_rate)
                    pts += fill
                    fill = 0

        def push(x: np.ndarray) -> Iterator[AudioChunk]:
            nonlocal limit, taken
            x = self._mix(x)  # (channels, n)
            if limit is not None and taken + x.shape[1] > limit:
                room = max(0, limit - taken)
                held.append(x[:, room:])
                x = x[:, :room]
                if sum(h.shape[1] for h in held) > tolerance:  # not padding: real audio
                    limit = None
                    x = np.concatenate([x, *held], axis=1)
                    held.clear()
            taken += x.shape[1]
            yield from chunk(x)

        try:
            for frame in self._decoded_frames():
                frame.pts = None  # the resampler need not track input timing; we count samples
                try:
                    out = resampler.resample(frame)
                except (av.FFmpegError, ValueError) as e:  # e.g. a mid-stream format change
                    log.debug("%s: resample error: %s", self.path, e)
                    self.truncated = True
                    break
                for o in out:
                    yield from push(o.to_ndarray())
            for o in resampler.resample(None):
                yield from push(o.to_ndarray())
            if fill:
                yield AudioChunk(buf[:, :fill].copy(), pts, self.sample_rate)
                pts += fill
                fill = 0
        finally:
            self.samples_read = pts + fill
            self._container.close()
        if pts == 0:
            if self.truncated or self._cut_wav is not None:
                raise MediaError(f"{self.path}: no decodable audio (corrupt or truncated file)")
            raise MediaError(f"{self.path}: the audio stream holds no samples (an empty recording)")
        decoded = pts / self.sample_rate
        expected = self.declared_duration if self._cut_wav is None else self._cut_wav
        if self._cut_wav is not None or (
            expected is not None and decoded < expected - 0.1 - 0.02 * expected
        ):
            self.truncated = True
        if self.truncated:
            # One warning per file: the video reader of the same file says the same thing.
            log.warning(
                "%s: truncated or damaged file; decoded %.2f s of audio%s",
                self.path,
                decoded,
                f" of the {expected:.2f} s it declares" if expected else "",
                extra={"once": ("truncated", self.path)},
            )


def iter_audio_chunks(
    path: PathLike,
    sample_rate: int = 48000,
    chunk_samples: int = 480,
    channels: int = 1,
    *,
    format: str | None = None,
) -> AudioReader:
    """Decode a file's first audio stream into fixed-size :class:`AudioChunk` s.

    Returns an :class:`AudioReader` (an iterator; opening errors are raised here, not on the
    first ``next``); its ``truncated`` flag tells whether the file ended early. ``format``
    selects a demuxer or device (e.g. ``"lavfi"``), as in :func:`open_container`.
    """
    return AudioReader(path, sample_rate, chunk_samples, channels, format=format)


def read_audio(path: PathLike, sample_rate: int = 48000, channels: int = 1) -> np.ndarray:
    """The whole first audio stream as float32 (channels, samples) at ``sample_rate``."""
    with AudioReader(path, sample_rate, chunk_samples=sample_rate * 10, channels=channels) as r:
        return np.concatenate([c.data for c in r], axis=1)
