"""Shared fixtures: tiny media files written with PyAV into ``tmp_path``."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

MakeClip = Callable[..., Path]


def sine(freq: float, seconds: float, rate: int, amp: float = 0.5) -> np.ndarray:
    """A float32 (n,) sine."""
    t = np.arange(round(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def frame_colour(i: int) -> tuple[int, int, int]:
    """The flat colour of frame ``i`` in clips from ``make_clip`` (distinct for i < 8)."""
    return (40 + 25 * i % 200, 200 - 20 * (i % 8), 128)


def _write_clip(
    path: Path,
    seconds: float = 1.0,
    audio_rate: int = 48000,
    video: bool = True,
    audio: bool = True,
    channels: int = 1,
    freq: float = 440.0,
    fps: int = 15,
    size: tuple[int, int] = (64, 48),
    audio_data: np.ndarray | None = None,
    faststart: bool = False,
) -> Path:
    """Write a clip: flat-coloured frames (``frame_colour``) and a sine (or ``audio_data``,
    float32 (channels, n)). ``.wav`` gets PCM 16-bit, anything else H.264 + AAC."""
    wav = path.suffix == ".wav"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        layout = {1: "mono", 2: "stereo"}[channels]
        streams = []
        if video and not wav:
            v = c.add_stream("libx264", rate=fps)
            v.width, v.height, v.pix_fmt = size[0], size[1], "yuv420p"
            streams.append(v)
        if audio:
            a = c.add_stream("pcm_s16le" if wav else "aac", rate=audio_rate, layout=layout)
            streams.append(a)
        if video and not wav:
            for i in range(round(seconds * fps)):
                img = np.empty((size[1], size[0], 3), np.uint8)
                img[:] = frame_colour(i)
                f = av.VideoFrame.from_ndarray(img, format="rgb24")
                f.pts, f.time_base = i, Fraction(1, fps)
                c.mux(v.encode(f))
        if audio:
            if audio_data is None:
                audio_data = np.tile(sine(freq, seconds, audio_rate), (channels, 1))
            f = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(audio_data, np.float32), format="fltp", layout=layout
            )
            f.sample_rate, f.pts = audio_rate, 0
            c.mux(a.encode(f))
        for s in streams:
            c.mux(s.encode(None))
    return path


@pytest.fixture
def make_clip(tmp_path: Path) -> MakeClip:
    """``make_clip(name="clip.mp4", seconds=1.0, audio_rate=48000, video=True, audio=True,
    channels=1, freq=440.0, fps=15, size=(64, 48), audio_data=None, faststart=False)``.

    ``name`` may also be a full path. ``make_clip.sine`` and ``make_clip.frame_colour`` expose the generators (tests run in
    importlib mode and cannot import conftest)."""
    counter = iter(range(10**6))

    def make(name: str | Path | None = None, **kw: object) -> Path:
        return _write_clip(tmp_path / (name or f"clip{next(counter)}.mp4"), **kw)  # type: ignore[arg-type]

    make.sine = sine  # type: ignore[attr-defined]
    make.frame_colour = frame_colour  # type: ignore[attr-defined]
    return make


# --------------------------------------------------------------------------- virtual audio


def portaudio_available() -> bool:
    """Whether sounddevice can load PortAudio (Debian libportaudio2)."""
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


def _start_pulse(root: Path):
    from livesense.errors import LivesenseError
    from livesense.live.virtual_audio import start_virtual_pulse

    try:
        return start_virtual_pulse(root)
    except LivesenseError as exc:
        pytest.skip(str(exc))


@pytest.fixture
def pulse(tmp_path: Path):
    """A private PulseAudio daemon: virtual mic "vmic" fed with a 20 s talker by paplay and a
    virtual headphone "hp"; yields (HOME dir, env for subprocesses)."""
    if not (shutil.which("pulseaudio") and shutil.which("paplay")) or not portaudio_available():
        pytest.skip("needs pulseaudio pulseaudio-utils libasound2-plugins libportaudio2")
    proc, env = _start_pulse(tmp_path)
    wav = tmp_path / "talk.wav"
    from livesense.media.wav import write_wav

    t = np.arange(20 * 48000) / 48000
    talk = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    write_wav(wav, talk[None].astype(np.float32), 48000)
    player = subprocess.Popen(["paplay", "--device=vsink", str(wav)], env=env)
    yield tmp_path, env
    player.kill()
    proc.terminate()
    proc.wait(timeout=10)


# --------------------------------------------------------------------------- binaural data


def _write_fake_sequence(
    folder: Path, seed: int, seconds: float = 0.5, rx: bool = False, speaker_yaw: float = 0.0
) -> None:
    """A Richard et al. sequence whose binaural is a fixed gain/delay of the mono (learnable):
    left 0.8 x mono delayed 3 samples, right 0.4 x delayed 12; speaker 1.5 m ahead drifting
    right; with ``rx`` a slowly turning listener."""
    from livesense.audio.geometry import yaw_quaternion
    from livesense.media.wav import write_wav

    sr = 48000
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    mono = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same") * 0.2
    left = 0.8 * np.concatenate([np.zeros(3), mono[:-3]])
    right = 0.4 * np.concatenate([np.zeros(12), mono[:-12]])
    write_wav(folder / "mono.wav", mono[None], sr, float32=True)
    write_wav(folder / "binaural.wav", np.stack([left, right]), sr, float32=True)
    rows = n // 400 + 2
    i = np.arange(rows)
    pos = np.stack([np.full(rows, 1.5), 0.002 * i, np.zeros(rows)], -1)
    quat = yaw_quaternion(speaker_yaw + 0 * i)
    np.savetxt(folder / "tx_positions.txt", np.concatenate([pos, quat], -1))
    if rx:
        np.savetxt(
            folder / "rx_positions.txt",
            np.concatenate([np.zeros((rows, 3)), yaw_quaternion(0.2 * i)], -1),
        )


@pytest.fixture(scope="session")
def fake_sequence() -> Callable[..., None]:
    """``fake_sequence(folder, seed, seconds=0.5, rx=False, speaker_yaw=0.0)`` writes one."""
    return _write_fake_sequence


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(dataset with test/: 2 sequences x 0.5 s, the second with a moving listener; a tiny
    random checkpoint) for the evaluation tests."""
    from livesense.models.binaural.checkpoint import random_model, save_checkpoint

    root = tmp_path_factory.mktemp("eval")
    for k in range(2):
        _write_fake_sequence(root / "data" / "test" / f"seq_{k}", 40 + k, rx=k == 1)
    return root / "data", save_checkpoint(root / "ckpt", random_model("tiny", 3))


# --------------------------------------------------------------------------- the CLI


def _cli_args(command: str, *positional: object, **options: object):
    """The parsed arguments of ``livesense COMMAND POSITIONAL... --option value...``
    (``True`` for a flag; underscores in option names become dashes)."""
    from livesense.cli import build_parser

    argv = [command, *map(str, positional)]
    for k, v in options.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return build_parser(command).parse_args(argv)


@pytest.fixture(scope="session")
def cli_args() -> Callable[..., object]:
    """``cli_args("eval-binaural", data=d, json=out)`` -> the Namespace the CLI would parse."""
    return _cli_args


@pytest.fixture(scope="session")
def run_command() -> Callable[..., int]:
    """``run_command("eval-binaural", data=d)``: the command's ``run`` on parsed arguments
    (user errors raise, as the CLI sees them before printing one line)."""
    from livesense.cli import load

    def run(command: str, *positional: object, **options: object) -> int:
        return load(command).run(_cli_args(command, *positional, **options))

    return run


SAMPLE = Path(__file__).resolve().parents[1] / "livesense" / "assets" / "sample.mp4"


@pytest.fixture(scope="session")
def sample_clip() -> Path:
    """The bundled 10 s sample clip (320x240 @ 15 fps video, 48 kHz mono AAC speech)."""
    return SAMPLE


@pytest.fixture(scope="session")
def livesense_process() -> Callable[..., subprocess.CompletedProcess]:
    """``livesense_process("replay", FILE, ..., timeout=120, env=None)``: ``python -m livesense``
    in a subprocess, text output captured."""

    def run(*args: object, timeout: float = 120, **kw: object) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "livesense", *map(str, args)],
            capture_output=True, text=True, timeout=timeout, **kw,  # type: ignore[arg-type]
        )  # fmt: skip

    return run


# --------------------------------------------------------------------------- live sessions

CLIENT_TOKEN = "tok"


@pytest.fixture(scope="session")
def client_server():
    """A live-session server on loopback for the client tests (token ``tok``, DSP renderer,
    a fake reasoner writing a note every 2 frames, stats every 0.2 s)."""
    from livesense.live.engines import Engines, FakeReasoner
    from livesense.live.server.app import ServerThread
    from livesense.live.server.config import ServerConfig

    cfg = ServerConfig(port=0, token=CLIENT_TOKEN, stats_interval_s=0.2)
    with ServerThread(cfg, Engines(reasoner=FakeReasoner(every=2))) as st:
        yield st
