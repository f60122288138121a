"""Binaural speech dataset in the Richard et al. 2021 layout (real recordings or ``synth-binaural``).

A root folder holds sequence folders (found recursively: any folder with a ``mono.wav``), each
with ``mono.wav``, ``binaural.wav`` (48 kHz), ``tx_positions.txt`` (speaker pose per 400
samples, listener-relative) and optionally ``rx_positions.txt`` (listener pose; absent: the
listener sits at the origin facing +x).

Items of :class:`BinauralDataset` are dicts::

    mono      (1, T) float32 tensor
    binaural  (2, T) float32 tensor (left, right)
    speaker   (T_frames, 7) float32 poses x y z qx qy qz qw at samples start + k * frame_hop,
    listener  (T_frames, 7)   T_frames = T // frame_hop + 1 (the frames of a centred STFT)
    sequence  folder name;  start  first sample of the crop

Poses are interpolated from the 120 Hz files by :class:`PoseFileTrajectory` (positions
linearly, rotations by slerp); :func:`poses_at_samples` gives them per sample. WAV data is read
straight from the file region of the crop (PCM 16/24/32-bit or float32), so large datasets need
no memory. Problems raise :class:`MediaError` naming the sequence folder.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from livesense.audio.geometry import Pose
from livesense.audio.trajectory import PoseFileTrajectory, StaticTrajectory, Trajectory
from livesense.errors import ConfigError, LivesenseError, MediaError

__all__ = [
    "BinauralDataset",
    "SequenceInfo",
    "WavInfo",
    "list_sequences",
    "poses_at_samples",
    "read_wav_segment",
    "wav_info",
]

POSE_RATE = 120.0


# ----------------------------------------------------------------------------- WAV access


@dataclass(frozen=True)
class WavInfo:
    """Header facts of a WAV file: data offset (bytes), sample format, frames."""

    sample_rate: int
    channels: int
    frames: int
    offset: int
    dtype: str  # "<i2", "<i3", "<i4", "<f4"


def wav_info(path: str | os.PathLike[str]) -> WavInfo:
    """Parse a RIFF/WAVE header (PCM or IEEE float, incl. WAVE_FORMAT_EXTENSIBLE)."""
    p = str(path)
    try:
        with open(p, "rb") as f:
            head = f.read(1 << 16)
            size = os.fstat(f.fileno()).st_size
    except OSError as e:
        raise MediaError(f"cannot read {p}: {e}") from None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise MediaError(f"{p}: not a WAV file")
    pos, fmt = 12, None
    while pos + 8 <= len(head):
        tag, n = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if tag == b"fmt ":
            fmt = struct.unpack("<HHIIHH", head[pos + 8 : pos + 24])
            if fmt[0] == 0xFFFE and n >= 40:  # extensible: the sub-format's first two bytes
                fmt = (struct.unpack("<H", head[pos + 32 : pos + 34])[0], *fmt[1:])
        elif tag == b"data":
            if fmt is None:
                raise MediaError(f"{p}: WAV data before its fmt chunk")
            code, channels, rate, _, block, bits = fmt
            dtype = {(1, 16): "<i2", (1, 24): "<i3", (1, 32): "<i4", (3, 32): "<f4"}.get(
                (code, bits)
            )
            if dtype is None:
                raise MediaError(f"{p}: unsupported WAV sample format (code {code}, {bits} bit)")
            avail = min(n, size - pos - 8) if n not in (0, 0xFFFFFFFF) else size - pos - 8
            return WavInfo(rate, channels, avail // block, pos + 8, dtype)
        pos += 8 + n + (n & 1)
    raise MediaError(f"{p}: no data chunk in the WAV header")


def read_wav_segment(
    path: str | os.PathLike[str], start: int, length: int, info: WavInfo | None = None
) -> np.ndarray:
    """Samples [start, start + length) as float32 (channels, length), zeros past the end."""
    w = info or wav_info(path)
    out = np.zeros((w.channels, length), np.float32)
    take = max(0, min(length, w.frames - start))
    if take == 0:
        return out
    width = 3 if w.dtype == "<i3" else int(w.dtype[-1])
    with open(path, "rb") as f:
        f.seek(w.offset + start * w.channels * width)
        raw = f.read(take * w.channels * width)
    if w.dtype == "<i3":
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        v = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8)) | (
            b[:, 2].astype(np.int8).astype(np.int32) << 16
        )
        x = v.astype(np.float32) / 8388608.0
    else:
        x = np.frombuffer(raw, w.dtype)
        if w.dtype != "<f4":
            x = x.astype(np.float32) / float(2 ** (8 * width - 1))
    x = x[: (x.shape[0] // w.channels) * w.channels].reshape(-1, w.channels).T  # (C, take)
    out[:, : x.shape[1]] = x
    return out


# ----------------------------------------------------------------------------- sequences


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence folder: name (relative to the root), length in samples, pose files."""

    name: str
    path: Path
    n_samples: int
    sample_rate: int
    has_listener_poses: bool

    @property
    def seconds(self) -> float:
        return self.n_samples / self.sample_rate


def _check_sequence(
    folder: Path, root: Path, sample_rate: int, tolerance: int
) -> tuple[SequenceInfo, WavInfo, WavInfo, Trajectory, Trajectory]:
    for f in ("mono.wav", "binaural.wav", "tx_positions.txt"):
        if not (folder / f).is_file():
            raise MediaError(f"sequence {folder}: missing {f}")
    mono, binaural = wav_info(folder / "mono.wav"), wav_info(folder / "binaural.wav")
    if mono.channels != 1 or binaural.channels != 2:
        raise MediaError(
            f"sequence {folder}: mono.wav must have 1 channel and binaural.wav 2, "
            f"got {mono.channels} and {binaural.channels}"
        )
    for w, f in ((mono, "mono.wav"), (binaural, "binaural.wav")):
        if w.sample_rate != sample_rate:
            raise MediaError(
                f"sequence {folder}: {f} is {w.sample_rate} Hz, the dataset expects {sample_rate}"
            )
    if abs(mono.frames - binaural.frames) > tolerance:
        raise MediaError(
            f"sequence {folder}: mono.wav ({mono.frames} samples) and binaural.wav "
            f"({binaural.frames} samples) differ in length by more than {tolerance} samples"
        )
    n = min(mono.frames, binaural.frames)
    try:
        tx = PoseFileTrajectory(folder / "tx_positions.txt", POSE_RATE)
        rx_file = folder / "rx_positions.txt"
        rx: Trajectory = (
            PoseFileTrajectory(rx_file, POSE_RATE)
            if rx_file.is_file()
            else StaticTrajectory(Pose())
        )
    except ConfigError as e:
        raise MediaError(f"sequence {folder}: {e}") from None
    hop = sample_rate / POSE_RATE
    for traj, f in ((tx, "tx_positions.txt"), (rx, "rx_positions.txt")):
        if isinstance(traj, PoseFileTrajectory) and len(traj) * hop < n - hop:
            raise MediaError(
                f"sequence {folder}: {f} has {len(traj)} poses ({len(traj) / POSE_RATE:.2f} s), "
                f"too short for {n / sample_rate:.2f} s of audio"
            )
    name = str(folder.relative_to(root)) if folder != root else folder.name
    info = SequenceInfo(name, folder, n, sample_rate, isinstance(rx, PoseFileTrajectory))
    return info, mono, binaural, tx, rx


def list_sequences(root: str | os.PathLike[str]) -> list[Path]:
    """Sequence folders under ``root`` (folders holding a ``mono.wav``), sorted."""
    r = Path(root)
    if not r.is_dir():
        raise MediaError(f"dataset folder not found: {r}")
    found = sorted({p.parent for p in r.rglob("mono.wav")})
    if not found:
        raise MediaError(f"dataset folder {r} holds no sequences (no mono.wav found)")
    return found


def poses_at_samples(traj: Trajectory, samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Poses (T, 7) float32 of a trajectory at absolute sample numbers (T,)."""
    pa = traj.at(np.asarray(samples, dtype=np.float64) / sample_rate)
    return np.concatenate([pa.positions, pa.orientations], axis=-1).astype(np.float32)


# ----------------------------------------------------------------------------- dataset


class BinauralDataset(Dataset):
    """Crops of ``segment_samples`` from every sequence under ``root`` (module docstring).

    Each sequence gives ``n_samples // segment_samples`` items (sequences shorter than one
    segment are skipped); ``segment_samples=None`` gives one whole sequence per item.
    ``random_crop``: an item's start is drawn from ``(seed, epoch, index)`` (reproducible, the
    same in every DataLoader worker; call :meth:`set_epoch` for new crops), else consecutive
    segments. ``frame_hop``: samples between pose frames (128: one per STFT hop).
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        segment_samples: int | None,
        sample_rate: int = 48000,
        random_crop: bool = True,
        seed: int = 0,
        frame_hop: int = 128,
        length_tolerance: int = 16,
    ):
        if segment_samples is not None and segment_samples <= 0:
            raise ConfigError(f"segment_samples must be positive, got {segment_samples}")
        if frame_hop <= 0:
            raise ConfigError(f"frame_hop must be positive, got {frame_hop}")
        self.root = Path(root)
        self.segment_samples = segment_samples
        self.sample_rate = int(sample_rate)
        self.random_crop = random_crop
        self.seed = int(seed)
        self.frame_hop = int(frame_hop)
        self.epoch = 0
        self._seqs = [
            _check_sequence(f, self.root, self.sample_rate, length_tolerance)
            for f in list_sequences(self.root)
        ]
        self.sequences: list[SequenceInfo] = [s[0] for s in self._seqs]
        self._items: list[tuple[int, int]] = []  # (sequence index, segment index)
        for i, s in enumerate(self.sequences):
            count = 1 if segment_samples is None else s.n_samples // segment_samples
            self._items += [(i, k) for k in range(count)]
        if not self._items:
            raise LivesenseError(
                f"dataset {self.root}: no sequence is at least {segment_samples} samples long"
            )

    def set_epoch(self, epoch: int) -> None:
        """New random crops for another epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_seconds(self) -> float:
        return sum(s.seconds for s in self.sequences)

    def describe(self) -> str:
        """A listing: one line per sequence with its length, then the total."""
        lines = [
            f"{s.name}  {s.seconds:8.2f} s{'  (listener moves)' if s.has_listener_poses else ''}"
            for s in self.sequences
        ]
        lines.append(
            f"{len(self.sequences)} sequences, {self.total_seconds:.1f} s, {len(self)} items"
        )
        return "\n".join(lines)

    def __getitem__(self, index: int) -> dict[str, object]:
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        si, k = self._items[index % len(self)]
        info, mono_w, bin_w, tx, rx = self._seqs[si]
        n = info.n_samples
        t = n if self.segment_samples is None else self.segment_samples
        if self.segment_samples is None:
            start = 0
        elif self.random_crop:
            rng = np.random.default_rng([self.seed, self.epoch, index % len(self)])
            start = int(rng.integers(n - t + 1))
        else:
            start = k * t
        mono = read_wav_segment(info.path / "mono.wav", start, t, mono_w)  # (1, T)
        binaural = read_wav_segment(info.path / "binaural.wav", start, t, bin_w)  # (2, T)
        frames = start + self.frame_hop * np.arange(t // self.frame_hop + 1)  # (T_frames,)
        return {
            "mono": torch.from_numpy(mono),
            "binaural": torch.from_numpy(binaural),
            "speaker": torch.from_numpy(poses_at_samples(tx, frames, self.sample_rate)),
            "listener": torch.from_numpy(poses_at_samples(rx, frames, self.sample_rate)),
            "sequence": info.name,
            "start": start,
        }

    def trajectories(self, sequence: int) -> tuple[Trajectory, Trajectory]:
        """Speaker and listener trajectories of sequence ``sequence`` (per-sample poses:
        :func:`poses_at_samples`)."""
        _, _, _, tx, rx = self._seqs[sequence]
        return tx, rx
