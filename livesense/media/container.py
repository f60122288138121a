"""Opening media files, URLs and devices with PyAV, probing them, and one-line errors.

Decoding policy for damaged input (shared by :mod:`.audio` and :mod:`.video`): everything
decodable is yielded; undecodable packets are skipped and a file that ends early (a cut
download, a recording killed mid-write) simply stops early. Either case sets the reader's
``truncated`` flag and logs one warning. A :class:`~livesense.errors.MediaError` is raised only
when the file cannot be opened, lacks the requested stream, or nothing at all could be decoded.
No PyAV exception escapes this package.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.container

from livesense.errors import MediaError

log = logging.getLogger(__name__)

PathLike = str | os.PathLike

__all__ = [
    "MediaInfo",
    "PathLike",
    "StreamInfo",
    "layout_name",
    "media_error",
    "open_container",
    "probe",
    "stream_duration",
    "tolerant_frames",
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


def layout_name(channels: int) -> str:
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


def stream_duration(stream: av.stream.Stream, container: av.container.Container) -> float | None:
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
                    duration=stream_duration(s, c),
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
