"""Streaming WAV writing (16-bit PCM or 32-bit float) that leaves a valid file after every write."""

from __future__ import annotations

import os
import struct
from types import TracebackType
from typing import BinaryIO

import numpy as np

from livesense.errors import MediaError
from livesense.media.container import PathLike, media_error

__all__ = ["WavWriter", "write_wav"]


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
