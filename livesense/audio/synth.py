"""Synthetic binaural training data in the Richard et al. 2021 layout (``synth-binaural``).

One folder per sequence::

    seq_0000/mono.wav          48 kHz mono speech (16-bit PCM)
    seq_0000/binaural.wav      48 kHz left/right, rendered by :func:`livesense.audio.room.render_room`
    seq_0000/tx_positions.txt  speaker pose per 400 samples (120 Hz): x y z qx qy qz qw,
                               listener-relative (listener reference pose at the origin)
    seq_0000/rx_positions.txt  listener pose per 400 samples, only when the listener turns
    seq_0000/meta.json         voice, pitch, rate, trajectory kind, room, seed

Speech comes from espeak-ng voices (pitch and rate varied, built-in sentences) or from a folder
of the user's wav files. Speakers move 0.7-2.5 m from the listener on arcs, lines or orbits
with smooth speed, facing roughly the listener; about a third of the sequences add listener
head turns. The demo room (:meth:`RoomConfig.demo`) is the default.

Reproducible: every sequence is drawn from ``SeedSequence([seed, split, index])``, so the same
seed gives identical files, and splits have disjoint seed spaces (disjoint trajectories).
Splits also use disjoint voices (:data:`VOICE_SPLITS`; a user's wav files are assigned to
splits by a hash of their names). ``--split all`` writes ``train/``, ``val/``, ``test/``
(80/10/10 % of ``--sequences``); every run writes ``split.json``.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from livesense.audio.geometry import Pose, quat_multiply, yaw_quaternion
from livesense.audio.hrtf import HrirSet, load_hrirs
from livesense.audio.room import RoomConfig, render_room
from livesense.audio.trajectory import PoseFileTrajectory, StaticTrajectory
from livesense.errors import ConfigError, MediaError
from livesense.media.audio import read_audio
from livesense.media.wav import write_wav

__all__ = [
    "POSE_RATE",
    "SAMPLE_RATE",
    "SENTENCES",
    "SPLITS",
    "VOICE_SPLITS",
    "SynthConfig",
    "generate_dataset",
    "random_trajectory",
]

SAMPLE_RATE = 48000
POSE_RATE = 120  # rows per second in tx/rx_positions.txt (one per 400 samples)
SPLITS = ("train", "val", "test")
SPEECH_RMS = 0.05  # mono level (about -26 dBFS)
ROOM_MARGIN = 0.3  # speakers stay this far from walls, floor and ceiling (m)

# Disjoint espeak-ng voices (language + voice variant) per split; never reorder (reproducibility).
VOICE_SPLITS: dict[str, tuple[str, ...]] = {
    "train": (
        "en-us+m1",
        "en-us+f2",
        "en-gb+m3",
        "en-gb+f1",
        "en-gb-scotland+m2",
        "en-gb-x-rp+f3",
        "en-029+m4",
        "en-gb-x-gbclan+f4",
        "en-us+m5",
        "en-gb+f5",
        "en-gb-x-gbcwmd+m1",
        "en-us-nyc+f3",
    ),
    "val": ("en-gb-x-gbcwmd+m6", "en-us-nyc+f1", "en-gb-scotland+f2"),
    "test": ("en-gb-x-rp+m7", "en-029+f1", "en-us-nyc+m3", "en-us+f4"),
}

SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "Please call Stella and ask her to bring these things with her from the store.",
    "A rainbow is a division of white light into many beautiful colours.",
    "We will meet at the station at half past seven tomorrow morning.",
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "Four hours of steady work faced us.",
    "Turn left at the next corner and walk straight to the old bridge.",
    "Can you hear where my voice is coming from right now?",
    "Sound travels at about three hundred and forty metres per second.",
    "The meeting has been moved to the small room on the second floor.",
    "I think the weather will clear up by the afternoon.",
    "Would you mind closing the window? It is getting cold in here.",
    "The children sang a song about the moon and the stars.",
    "Every morning she walks the dog along the river.",
    "Numbers like seven, twelve and forty two are easy to remember.",
    "He left his keys on the kitchen table again.",
    "Our train was delayed by almost an hour.",
    "Listen carefully and point to the speaker with your hand.",
)


# ----------------------------------------------------------------------------- speech


class _Speech:
    """Mono speech source for one split: espeak-ng voices or the user's wav files."""

    def __init__(self, split: str, voices_dir: str | None, tmp: Path):
        self.tmp = tmp
        self.files: list[Path] = []
        if voices_dir is None:
            if shutil.which("espeak-ng") is None:
                raise ConfigError(
                    "espeak-ng not found: install it (Debian/Ubuntu: sudo apt-get install "
                    "espeak-ng) or pass --voices DIR_OF_WAVS"
                )
            self.voices: tuple[str, ...] = VOICE_SPLITS[split]
        else:
            self.files = _split_wavs(voices_dir, split)
            self.voices = tuple(f.name for f in self.files)

    def make(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, dict[str, object]]:
        """Speech (n,) float64 at SPEECH_RMS and its description."""
        voice_i = int(rng.integers(len(self.voices)))
        if self.files:
            x, info = self._from_files(rng, n, voice_i)
        else:
            x, info = self._from_espeak(rng, n, voice_i)
        active = x[np.abs(x) > 1e-4]
        rms = math.sqrt(float(np.mean(active**2))) if active.size else 0.0
        if rms == 0.0:
            raise MediaError(f"speech source {info['voice']} produced silence")
        return x * (SPEECH_RMS / rms), info

    def _from_espeak(
        self, rng: np.random.Generator, n: int, voice_i: int
    ) -> tuple[np.ndarray, dict[str, object]]:
        voice = self.voices[voice_i]
        pitch, rate = int(rng.integers(25, 76)), int(rng.integers(135, 196))
        parts: list[np.ndarray] = []
        got, texts = 0, []
        while got < n:
            text = " ".join(SENTENCES[i] for i in rng.permutation(len(SENTENCES))[:3])
            texts.append(text)
            wav = self.tmp / "tts.wav"
            cmd = ["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(rate), "-w", str(wav)]
            res = subprocess.run([*cmd, text], capture_output=True, text=True, check=False)
            if res.returncode != 0:
                msg = (res.stderr or res.stdout).strip().splitlines()
                raise ConfigError(f"espeak-ng voice {voice!r} failed: {msg[-1] if msg else ''}")
            x = read_audio(wav, SAMPLE_RATE)[0].astype(np.float64)
            gap = np.zeros(int(rng.uniform(0.1, 0.4) * SAMPLE_RATE))
            parts += [gap, x]
            got += gap.shape[0] + x.shape[0]
        info = {"voice": voice, "pitch": pitch, "rate": rate, "text": " ".join(texts)}
        return np.concatenate(parts)[:n], info

    def _from_files(
        self, rng: np.random.Generator, n: int, voice_i: int
    ) -> tuple[np.ndarray, dict[str, object]]:
        path = self.files[voice_i]
        x = read_audio(path, SAMPLE_RATE)[0].astype(np.float64)
        if x.shape[0] == 0:
            raise MediaError(f"{path}: no audio")
        if x.shape[0] >= n:
            start = int(rng.integers(x.shape[0] - n + 1))
            x = x[start : start + n]
        else:
            start = 0
            x = np.tile(x, -(-n // x.shape[0]))[:n]  # loop short recordings
        return x, {"voice": path.name, "offset_samples": start}


def _split_wavs(voices_dir: str, split: str) -> list[Path]:
    """The wav files of ``voices_dir`` assigned to ``split`` (by a hash of the name: 80/10/10);
    ``split == "any"`` keeps them all."""
    d = Path(voices_dir)
    if not d.is_dir():
        raise ConfigError(f"--voices {voices_dir}: not a directory")
    files = sorted(p for p in d.iterdir() if p.suffix.lower() == ".wav" and p.is_file())
    if not files:
        raise ConfigError(f"--voices {voices_dir}: no .wav files in the folder")
    if split == "any":
        return files
    by_split: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for f in files:
        h = int(hashlib.sha256(f.name.encode()).hexdigest(), 16) % 10
        by_split["train" if h < 8 else "val" if h == 8 else "test"].append(f)
    if not by_split[split]:
        raise ConfigError(
            f"--voices {voices_dir}: none of its {len(files)} wav files falls into the {split} "
            "split (files are split 80/10/10 by name); add more files"
        )
    return by_split[split]


# ----------------------------------------------------------------------------- trajectories


def _ease(u: np.ndarray) -> np.ndarray:
    """Smooth 0 -> 1 (zero speed at both ends)."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(u, 0.0, 1.0))


def random_trajectory(
    rng: np.random.Generator, seconds: float, room: RoomConfig, rows: int | None = None
) -> tuple[np.ndarray, str]:
    """Speaker poses (R, 7) at 120 Hz (listener-relative) inside ``room``, and the kind
    (``arc``, ``line`` or ``orbit``). Distance 0.7-2.5 m, smooth speed, facing the listener."""
    r = rows if rows is not None else int(math.ceil(seconds * POSE_RATE)) + 1
    u = np.arange(r) / max(r - 1, 1)  # (R,) 0..1
    t = np.arange(r) / POSE_RATE
    lo = np.full(3, ROOM_MARGIN)
    hi = np.asarray(room.size) - ROOM_MARGIN
    for _ in range(200):
        kind = str(rng.choice(["arc", "line", "orbit"]))
        z = rng.uniform(-0.4, 0.4) + rng.uniform(-0.1, 0.1) * np.sin(2 * np.pi * u)
        if kind == "arc":
            a0 = rng.uniform(-180, 180)
            az = np.radians(a0 + rng.uniform(-120, 120) * _ease(u))
            dist = rng.uniform(0.7, 2.5) + rng.uniform(-0.2, 0.2) * _ease(u)
            xy = np.stack([dist * np.cos(az), dist * np.sin(az)], -1)
        elif kind == "line":
            p0, p1 = (
                rng.uniform(0.7, 2.5) * np.array([np.cos(a), np.sin(a)])
                for a in np.radians(rng.uniform(-180, 180, 2))
            )
            xy = p0 + (p1 - p0) * _ease(u)[:, None]
        else:
            speed = rng.uniform(30, 90) * rng.choice([-1, 1])  # deg/s, varying smoothly
            wobble = 0.3 * np.sin(2 * np.pi * t / rng.uniform(2, 6) + rng.uniform(0, 6.3))
            az = np.radians(rng.uniform(-180, 180) + np.cumsum(speed * (1 + wobble)) / POSE_RATE)
            dist = rng.uniform(0.8, 2.3)
            xy = np.stack([dist * np.cos(az), dist * np.sin(az)], -1)
        pos = np.concatenate([xy, z[:, None]], axis=-1)  # (R, 3)
        d = np.linalg.norm(pos, axis=-1)
        inside = room.to_room(pos)
        if d.min() < 0.65 or d.max() > 2.6:
            continue
        if np.any(inside < lo) or np.any(inside > hi):
            continue
        # Facing the listener, +-20 degrees of slowly varying yaw error.
        yaw = np.degrees(np.arctan2(-pos[:, 1], -pos[:, 0]))
        yaw = yaw + rng.uniform(-20, 20) * np.cos(2 * np.pi * u * rng.uniform(0.2, 1.0))
        q = yaw_quaternion(yaw)  # (R, 4)
        return np.concatenate([pos, q], axis=-1), kind
    raise ConfigError(f"cannot fit a speaker trajectory into the room {room.size}")


def _head_turns(rng: np.random.Generator, rows: int) -> np.ndarray:
    """Listener poses (R, 7): at the origin, one or two smooth yaw turns (and a little pitch)."""
    t = np.arange(rows) / POSE_RATE
    yaw = np.zeros(rows)
    dur = t[-1] if rows > 1 else 1.0
    for _ in range(int(rng.integers(1, 3))):
        start, length = rng.uniform(0, 0.7) * dur, rng.uniform(0.4, 1.5)
        yaw += rng.uniform(-70, 70) * _ease((t - start) / length)
    pitch = rng.uniform(-10, 10) * np.sin(np.pi * t / max(dur, 1e-3))
    q = quat_multiply(
        yaw_quaternion(yaw),
        np.stack(
            [
                np.zeros(rows),
                np.sin(np.radians(-pitch) / 2),
                np.zeros(rows),
                np.cos(np.radians(-pitch) / 2),
            ],
            -1,
        ),
    )
    return np.concatenate([np.zeros((rows, 3)), q], axis=-1)


def _write_poses(path: Path, poses: np.ndarray) -> None:
    np.savetxt(path, poses, fmt="%.6f")


# ----------------------------------------------------------------------------- generator


def _split_counts(total: int, split: str) -> dict[str, int]:
    if split != "all":
        return {split: total}
    if total < 3:
        raise ConfigError("--split all needs --sequences >= 3 (one per train/val/test at least)")
    n_val = n_test = max(1, round(0.1 * total))
    return {"train": total - n_val - n_test, "val": n_val, "test": n_test}


@dataclass(frozen=True)
class SynthConfig:
    """What :func:`generate_dataset` writes (the options of ``synth-binaural``)."""

    out: Path
    sequences: int = 8
    seconds: float = 10.0
    seed: int = 0  # same seed, same files
    room: str = "demo"  # "demo" or "random"
    voices: str | None = None  # a folder of speech wav files (None: espeak-ng voices)
    split: str = "train"  # train, val, test or all (80/10/10 %)


def generate_dataset(
    config: SynthConfig,
    hrirs: HrirSet | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, object]:
    """Write ``config.sequences`` sequences of ``config.seconds`` s under ``config.out`` (module
    docstring); returns the manifest also written to ``out/split.json``. ``on_progress(done,
    total)`` after each sequence."""
    out, sequences, seconds, seed = config.out, config.sequences, config.seconds, config.seed
    room, voices, split = config.room, config.voices, config.split
    if sequences <= 0 or not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError("--sequences and --seconds must be positive")
    if room not in ("demo", "random"):
        raise ConfigError(f"--room must be 'demo' or 'random', got {room!r}")
    if split not in (*SPLITS, "all"):
        raise ConfigError(f"--split must be train, val, test or all, got {split!r}")
    root = Path(out)
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--out {root}: exists and is not a directory")
    counts = _split_counts(sequences, split)
    hr = (hrirs if hrirs is not None else load_hrirs(None, SAMPLE_RATE)).resample(SAMPLE_RATE)
    n = int(round(seconds * SAMPLE_RATE))
    rows = -(-n // (SAMPLE_RATE // POSE_RATE)) + 1  # covers the last sample
    manifest: dict[str, object] = {"seed": seed, "seconds": seconds, "room": room, "splits": {}}
    total, done = sum(counts.values()), 0
    with tempfile.TemporaryDirectory() as tmp:
        for split_name, count in counts.items():
            split_id = SPLITS.index(split_name)
            speech = _Speech(split_name, voices, Path(tmp))
            folder = root / split_name if split == "all" else root
            seqs = []
            for i in range(count):
                ss = np.random.SeedSequence([seed, split_id, i])
                rng = np.random.default_rng(ss)
                name = f"seq_{i:04d}"
                seqs.append(name)
                _one_sequence(folder / name, rng, n, rows, room, speech, hr)
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
            manifest["splits"][split_name] = {  # type: ignore[index]
                "folder": str(folder.relative_to(root)) if folder != root else ".",
                "sequences": seqs,
                "voices": list(speech.voices),
            }
    (root / "split.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _one_sequence(
    folder: Path,
    rng: np.random.Generator,
    n: int,
    rows: int,
    room_kind: str,
    speech: _Speech,
    hr: HrirSet,
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    room = RoomConfig.random(rng) if room_kind == "random" else RoomConfig.demo()
    mono, info = speech.make(rng, n)  # (n,)
    tx, kind = random_trajectory(rng, n / SAMPLE_RATE, room, rows)
    _write_poses(folder / "tx_positions.txt", tx)
    turns = bool(rng.random() < 1 / 3)
    rx_path = folder / "rx_positions.txt"
    if turns:
        _write_poses(rx_path, _head_turns(rng, rows))
    elif rx_path.exists():
        rx_path.unlink()
    # Render from the files as written, so the labels are exactly what was rendered.
    spk = PoseFileTrajectory(folder / "tx_positions.txt", POSE_RATE)
    lis = PoseFileTrajectory(rx_path, POSE_RATE) if turns else StaticTrajectory(Pose())
    render_seed = int(rng.integers(2**31))
    y = render_room(mono, SAMPLE_RATE, spk, lis, room, hr, seed=render_seed)  # (2, n)
    peak = max(float(np.abs(y).max()), float(np.abs(mono).max()))
    scale = 0.95 / peak if peak > 0.95 else 1.0  # one gain for both keeps mono -> binaural
    write_wav(folder / "mono.wav", (mono * scale)[None], SAMPLE_RATE)
    write_wav(folder / "binaural.wav", y * scale, SAMPLE_RATE)
    meta = {
        **info,
        "trajectory": kind,
        "listener_turns": turns,
        "gain": scale,
        "render_seed": render_seed,
        "room": asdict(room),
        "rt60_eyring_s": room.rt60(),
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
