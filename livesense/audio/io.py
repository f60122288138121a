"""Media file I/O: probing, streaming audio decode + resampling (PyAV), and WAV writing.

Decoding policy for damaged input: everything decodable is yielded; undecodable packets are
skipped and a file that ends early (a cut download, a recording killed mid-write) simply stops
early. Either case sets the reader's ``truncated`` flag and logs one warning. A
:class:`~livesense.errors.MediaError` is raised only when the file cannot be opened, lacks the
requested stream, or nothing at all could be decoded. No PyAV exception escapes this module.
"""

from __future__ import annotations

import logging
import os
import struct
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import av
import av.container
import numpy as np

from livesense.errors import MediaError
from livesense.streaming.frames import AudioChunk

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

__all__ = [
    "AudioReader",
    "MediaInfo",
    "StreamInfo",
    "WavWriter",
    "iter_audio_chunks",
    "media_error",
    "open_container",
    "probe",
    "read_audio",
    "write_wav",
]


# --------------------------------------------------------------------------- opening + errors


# FFmpeg's "tty" demuxer renders any text file as ANSI-art video; never what a user means.
_TEXT_FORMATS = frozenset({"tty"})


def _is_url(source: str) -> bool:
    return "://" in source


def media_error(
    source: PathLike, exc: BaseException, action: str = "cannot read media"
) -> MediaError:
    """Translate a PyAV/OS exception into a one-line :class:`MediaError` naming ``source``."""
    name = os.fspath(source)
    if isinstance(exc, MediaError):
        return exc
    if isinstance(exc, FileNotFoundError):
        if action == "cannot write":
            return MediaError(f"{name}: cannot write: the folder does not exist")
        return MediaError(f"{name}: no such file")
    if isinstance(exc, IsADirectoryError):
        return MediaError(f"{name}: is a directory, not a media file")
    if isinstance(exc, PermissionError):
        return MediaError(f"{name}: permission denied")
    if isinstance(exc, av.error.InvalidDataError):
        return MediaError(
            f"{name}: not a readable media file (unrecognised format, or corrupt/truncated)"
        )
    reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return MediaError(f"{name}: {action}: {reason}".replace("\n", " "))


def open_container(
    source: PathLike, format: str | None = None, options: dict[str, str] | None = None
) -> av.container.InputContainer:
    """Open a file, URL or device (``format="lavfi"``, ``"v4l2"``...) for reading.

    Local paths are checked first so the common mistakes get precise messages; every PyAV
    error is translated into :class:`MediaError`.
    """
    name = os.fspath(source)
    if format is None and not _is_url(name):
        p = Path(name)
        if not p.exists():
            raise MediaError(f"{name}: no such file")
        if p.is_dir():
            raise MediaError(f"{name}: is a directory, not a media file")
        if p.stat().st_size == 0:
            raise MediaError(f"{name}: empty file, not a media file")
    try:
        container = av.open(name, mode="r", format=format, options=options or {})
    except (av.FFmpegError, OSError) as e:
        raise media_error(name, e, "cannot open") from None
    if format is None and container.format.name in _TEXT_FORMATS:
        container.close()
        raise MediaError(f"{name}: not a readable media file (it looks like a text file)")
    return container


def _layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


# --------------------------------------------------------------------------- probing


@dataclass(frozen=True)
class StreamInfo:
    """One audio or video stream of a media file. Durations in seconds; None when unknown."""

    index: int
    kind: str  # "audio" | "video"
    codec: str
    duration: float | None = None
    frames: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    width: int | None = None
    height: int | None = None
    fps: float | None = None

    def describe(self) -> str:
        """One line: ``#0 video h264 320x240 @ 15 fps, 10.00 s, 150 frames``."""
        parts = [f"#{self.index} {self.kind} {self.codec}"]
        if self.kind == "audio":
            parts.append(f"{self.sample_rate} Hz, {self.channels} ch")
        else:
            fps = f" @ {self.fps:g} fps" if self.fps else ""
            parts.append(f"{self.width}x{self.height}{fps}")
        tail = []
        if self.duration is not None:
            tail.append(f"{self.duration:.2f} s")
        if self.frames is not None:
            tail.append(f"{self.frames} frames")
        return " ".join(parts) + (", " + ", ".join(tail) if tail else "")


@dataclass(frozen=True)
class MediaInfo:
    """What :func:`probe` found in a media file."""

    path: str
    format: str
    duration: float | None
    streams: list[StreamInfo] = field(default_factory=list)

    @property
    def audio(self) -> StreamInfo | None:
        """The first audio stream, if any."""
        return next((s for s in self.streams if s.kind == "audio"), None)

    @property
    def video(self) -> StreamInfo | None:
        """The first video stream, if any."""
        return next((s for s in self.streams if s.kind == "video"), None)

    def describe(self) -> str:
        """Human-readable multi-line summary (``livesense info``)."""
        dur = f"{self.duration:.2f} s" if self.duration is not None else "unknown duration"
        lines = [f"{self.path}", f"  format: {self.format}, {dur}"]
        lines += [f"  {s.describe()}" for s in self.streams]
        if not self.streams:
            lines.append("  (no audio or video streams)")
        return "\n".join(lines)


def _stream_duration(stream: av.stream.Stream, container: av.container.Container) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def probe(path: PathLike) -> MediaInfo:
    """Read a media file's container and stream metadata (no decoding)."""
    name = os.fspath(path)
    with open_container(name) as c:
        try:
            streams: list[StreamInfo] = []
            for s in c.streams:
                if s.type not in ("audio", "video"):
                    continue
                cc = s.codec_context
                common = dict(
                    index=s.index,
                    kind=s.type,
                    codec=cc.name if cc is not None else "unknown",
                    duration=_stream_duration(s, c),
                    frames=int(s.frames) or None,
                )
                if s.type == "audio":
                    streams.append(
                        StreamInfo(**common, sample_rate=int(cc.sample_rate), channels=cc.channels)
                    )
                else:
                    rate = s.average_rate or s.guessed_rate
                    streams.append(
                        StreamInfo(
                            **common,
                            width=int(cc.width),
                            height=int(cc.height),
                            fps=float(rate) if rate else None,
                        )
                    )
            duration = c.duration / av.time_base if c.duration is not None else None
            return MediaInfo(path=name, format=c.format.name, duration=duration, streams=streams)
        except (av.FFmpegError, OSError) as e:
            raise media_error(name, e, "cannot probe") from None


# --------------------------------------------------------------------------- audio decoding


def _wav_is_cut(path: str) -> bool:
    """Whether a RIFF/WAVE file is shorter than its ``data`` chunk header says."""
    try:
        with open(path, "rb") as f:
            head = f.read(1 << 16)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return False
    pos = 12
    while pos + 8 <= len(head):
        tag, n = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if tag == b"data":
            return n not in (0, 0xFFFFFFFF) and size < pos + 8 + n  # 0/~0: streamed, unknown
        pos += 8 + n + (n & 1)
    return False


def tolerant_frames(
    container: av.container.InputContainer, stream: av.stream.Stream, path: str
) -> Generator[av.AudioFrame | av.VideoFrame, None, int]:
    """Decoded frames of ``stream``, skipping undecodable packets and stopping at a demux
    error (a truncated file); returns how many errors were met."""
    errors = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            break
        except (av.FFmpegError, OSError) as e:
            errors += 1
            log.debug("%s: demux error: %s", path, e)
            break
        try:
            frames = packet.decode()
        except (av.FFmpegError, OSError) as e:
            errors += 1
            log.debug("%s: undecodable packet: %s", path, e)
            continue
        yield from frames
    return errors


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
        self.declared_duration = _stream_duration(self._stream, self._container)
        # FFmpeg clamps a WAV's duration to the file size, so check its header ourselves.
        self._cut_wav = self._container.format.name == "wav" and _wav_is_cut(self.path)
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
            layout=None if keep_layout else _layout_name(self.channels),
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
            raise MediaError(f"{self.path}: no decodable audio (corrupt or truncated file)")
        decoded = pts / self.sample_rate
        expected = self.declared_duration
        if self._cut_wav or (expected is not None and decoded < expected - 0.1 - 0.02 * expected):
            self.truncated = True
        if self.truncated:
            log.warning(
                "%s: file is truncated or damaged; decoded %.2f s of audio%s",
                self.path,
                decoded,
                f" of {expected:.2f} s" if expected is not None else "",
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


# --------------------------------------------------------------------------- WAV writing


_RIFF_MAX = 0xFFFFFFFF


class WavWriter:
    """Streaming WAV writer (16-bit PCM, or 32-bit float with ``float32=True``).

    After every :meth:`write` the header sizes are updated and the file flushed, so the file on
    disk is always a valid WAV holding everything written so far (a crash or Ctrl-C loses
    nothing already written). Samples are clipped to [-1, 1]; NaN becomes 0.
    """

    def __init__(
        self, path: PathLike, sample_rate: int, channels: int = 1, *, float32: bool = False
    ) -> None:
        if sample_rate <= 0 or channels <= 0:
            raise ValueError("sample_rate and channels must be positive")
        self.path = os.fspath(path)
        self.sample_rate = sample_rate
        self.channels = channels
        self.float32 = float32
        self.frames_written = 0
        self._width = 4 if float32 else 2
        try:
            self._f: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        except OSError as e:
            raise media_error(self.path, e, "cannot write") from None
        self._write_header()

    def _write_header(self) -> None:
        f = self._f
        assert f is not None
        block = self.channels * self._width
        data_bytes = self.frames_written * block
        if self.float32:  # IEEE float needs the 18-byte fmt chunk and a fact chunk
            fmt = struct.pack(
                "<HHIIHHH",
                3,
                self.channels,
                self.sample_rate,
                self.sample_rate * block,
                block,
                32,
                0,
            )
            extra = b"fact" + struct.pack("<II", 4, self.frames_written)
        else:
            fmt = struct.pack(
                "<HHIIHH", 1, self.channels, self.sample_rate, self.sample_rate * block, block, 16
            )
            extra = b""
        head = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + extra
        head += b"data" + struct.pack("<I", data_bytes)
        f.seek(0)
        f.write(b"RIFF" + struct.pack("<I", len(head) + data_bytes) + head)
        f.seek(0, os.SEEK_END)
        f.flush()

    @property
    def duration(self) -> float:
        """Seconds written so far."""
        return self.frames_written / self.sample_rate

    def write(self, data: np.ndarray) -> None:
        """Append float (channels, n) samples (a 1-D array is accepted for mono)."""
        if self._f is None:
            raise ValueError(f"{self.path}: WavWriter is closed")
        x = np.asarray(data, dtype=np.float32)
        if x.ndim == 1 and self.channels == 1:
            x = x[None]
        if x.ndim != 2 or x.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, n) samples, got shape {x.shape}")
        n = x.shape[1]
        if n == 0:
            return
        block = self.channels * self._width
        if (self.frames_written + n) * block + 64 > _RIFF_MAX:
            raise MediaError(f"{self.path}: WAV files are limited to 4 GiB")
        x = np.clip(np.nan_to_num(x, nan=0.0), -1.0, 1.0).T  # (n, channels) interleaved
        if self.float32:
            raw = np.ascontiguousarray(x, dtype="<f4").tobytes()
        else:
            raw = np.round(x * 32767.0).astype("<i2").tobytes()
        self._f.write(raw)
        self.frames_written += n
        self._write_header()

    def close(self) -> None:
        """Finalise the header and close the file (idempotent)."""
        if self._f is None:
            return
        try:
            self._write_header()
        finally:
            self._f.close()
            self._f = None

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def write_wav(path: PathLike, data: np.ndarray, sample_rate: int, *, float32: bool = False) -> None:
    """Write float (channels, n) (or 1-D mono) samples to a WAV file in one go."""
    x = np.asarray(data, dtype=np.float32)
    if x.ndim == 1:
        x = x[None]
    with WavWriter(path, sample_rate, x.shape[0], float32=float32) as w:
        w.write(x)
