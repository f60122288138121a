"""`livesense mic` through virtual devices: a sample-exact ALSA file device, a real-time PulseAudio virtual microphone, Ctrl-C, device errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.media.audio import read_audio

SR = 48000


def _portaudio_available() -> bool:
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return False
    return True


needs_portaudio = pytest.mark.skipif(
    not _portaudio_available(), reason="PortAudio missing: apt-get install libportaudio2"
)


def _signal(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(0)
    x = 0.3 * np.sin(2 * np.pi * 440 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 1.5 * t))
    x += 0.05 * rng.standard_normal(t.size)
    return np.round(np.clip(x, -1, 1) * 32767).astype("<i2")


@pytest.fixture
def alsa_home(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A HOME whose .asoundrc defines a file-backed microphone and a null headphone."""
    pcm = _signal(2.0)
    raw = tmp_path / "in.raw"
    pcm.tofile(raw)
    (tmp_path / ".asoundrc").write_text(
        f"""
pcm.filein {{ type file; slave.pcm "null"; file "/dev/null"; infile "{raw}"; format "raw" }}
pcm.lsin {{ type plug; slave {{ pcm "filein"; format S16_LE; rate 48000; channels 1 }}
  hint {{ show on; description "livesense test mic" }} }}
pcm.lsout {{ type plug; slave {{ pcm "null"; format S16_LE; rate 48000; channels 2 }}
  hint {{ show on; description "livesense test headphones" }} }}
"""
    )
    return tmp_path, pcm


def _mic(home: Path, *args: str, env: dict | None = None, timeout: float = 60):
    e = {**os.environ, "HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "livesense", "mic", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=e,
        stdin=subprocess.DEVNULL,
    )


@needs_portaudio
def test_mic_sample_exact_through_alsa_file_device(alsa_home):
    home, pcm = alsa_home
    rec = home / "rec"
    r = _mic(home, "--input", "lsin", "--output", "lsout", "--duration", "1.5", "--lossless",
             "--speaker-pose", "0,1,0", "--record", str(rec), "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    got = read_audio(str(rec / "binaural.wav"), sample_rate=SR, channels=2)
    x = pcm[: int(1.5 * SR)].astype(np.float32) / 32768.0
    ref = DspBinauralRenderer(Pose((0.0, 1.0, 0.0))).process(x[None])
    assert got.shape == ref.shape == (2, int(1.5 * SR))
    assert np.max(np.abs(got - np.clip(ref, -1, 1))) < 1e-4  # 16-bit WAV quantisation
    stats = json.loads((rec / "stats.json").read_text())
    assert stats["rendered_samples"] == int(1.5 * SR)
    assert stats["input_overrun_samples"] == 0
    assert stats["stop_reason"] == "duration reached"
    assert (rec / "transcript.jsonl").exists()


@needs_portaudio
def test_mic_device_errors(alsa_home):
    home, _ = alsa_home
    r = _mic(home, "--input", "no-such-device", "--duration", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: no input device 'no-such-device'")
    assert "lsin" in r.stderr  # says which devices exist
    r = _mic(home, "--list-devices")
    assert r.returncode == 0 and "lsin" in r.stdout and "lsout" in r.stdout
    r = _mic(home, "--no-output", "--duration", "1")
    assert r.returncode == 2 and "--record" in r.stderr


def test_missing_portaudio_is_a_clear_error(monkeypatch):
    import builtins

    from livesense.errors import LivesenseError
    from livesense.live import devices

    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *a, **k)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(LivesenseError, match="apt-get install libportaudio2"):
        devices.import_sounddevice()


@needs_portaudio
def test_mic_keeps_up_in_real_time_through_pulseaudio(pulse):
    root, env = pulse
    rec = root / "rec"
    t0 = time.monotonic()
    r = _mic(root, "--input", "pulse", "--output", "pulse", "--duration", "10",
             "--orbit", "4", "--record", str(rec), "-q", env=env)  # fmt: skip
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    stats = json.loads((rec / "stats.json").read_text())
    assert stats["rendered_samples"] == 10 * SR
    assert stats["output_underruns"] == 0, stats
    assert stats["input_overrun_samples"] == 0
    assert wall >= 9.5, "a live device must pace the run"
    got = read_audio(str(rec / "binaural.wav"), sample_rate=SR, channels=2)
    assert got.shape == (2, 10 * SR) and np.sqrt(np.mean(got**2)) > 0.01  # heard the talker


@needs_portaudio
def test_mic_ctrl_c_keeps_complete_recording(pulse):
    root, env = pulse
    rec = root / "rec"
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesense", "mic", "--input", "pulse", "--output", "pulse",
         "--duration", "30", "--record", str(rec), "-q"],
        env={**env, "HOME": str(root)}, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wav = rec / "binaural.wav"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # wait until over a second has been rendered
        if wav.exists() and wav.stat().st_size > 44 + 4 * SR * 1.2:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    stats = json.loads((rec / "stats.json").read_text())
    assert stats["stop_reason"] == "interrupted"
    got = read_audio(str(rec / "binaural.wav"), sample_rate=SR, channels=2)
    assert got.shape[1] == stats["rendered_samples"] > SR


def test_block_ms_is_bounded(tmp_path: Path):
    """A 1000 s device block used to hang past --duration; now it is refused at once."""
    r = _mic(tmp_path, "--block-ms", "1000000", "--duration", "1", timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: argument --block-ms: must be > 0 and at most 100 ms")


def test_record_onto_a_file_or_an_earlier_recording(tmp_path: Path):
    f = tmp_path / "take.wav"
    f.write_bytes(b"RIFF")
    r = _mic(tmp_path, "--no-output", "--record", str(f), "--duration", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr == f"error: --record {f} exists and is not a folder\n"
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "binaural.wav").write_bytes(b"RIFF")
    r = _mic(tmp_path, "--no-output", "--record", str(rec), "--duration", "1")
    assert r.returncode == 2 and "already holds the outputs of an earlier run" in r.stderr
    assert "--force" in r.stderr and (rec / "binaural.wav").read_bytes() == b"RIFF"
    r = _mic(tmp_path, "--force", "--duration", "1")
    assert r.returncode == 2 and r.stderr == "error: --force applies to --record DIR\n"


def test_options_the_renderer_ignores_are_errors(tmp_path: Path):
    r = _mic(tmp_path, "--nfe", "2", "--duration", "1")  # --renderer dsp is mic's default
    assert r.returncode == 2 and r.stderr.startswith("error: --nfe applies to --renderer neural")


@needs_portaudio
def test_mic_large_block_is_sample_exact_and_stops_on_time(alsa_home):
    home, pcm = alsa_home
    rec = home / "rec"
    t0 = time.monotonic()
    r = _mic(home, "--input", "lsin", "--output", "lsout", "--duration", "1", "--lossless",
             "--block-ms", "100", "--record", str(rec), "-q")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 20
    stats = json.loads((rec / "stats.json").read_text())
    assert stats["rendered_samples"] == SR and stats["stop_reason"] == "duration reached"
    got = read_audio(str(rec / "binaural.wav"), sample_rate=SR, channels=2)
    assert got.shape == (2, SR)
