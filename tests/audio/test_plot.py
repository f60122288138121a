"""Tests for livesense.audio.plot: ILD helper, azimuth helper and the binaural PNG."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from livesense.audio.geometry import Pose
from livesense.audio.plot import (
    ild_over_time,
    plot_binaural,
    power_spectrogram,
    source_azimuth,
)
from livesense.audio.trajectory import OrbitTrajectory, StaticTrajectory

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SIX_DB = 20.0 * np.log10(2.0)  # 6.0206


def _tone(freq: float, seconds: float, sr: int, amp: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return amp * np.sin(2 * np.pi * freq * t)


def _noise(seconds: float, sr: int, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal(int(seconds * sr))


def _check_png(path: Path, max_bytes: int = 300_000) -> None:
    from PIL import Image

    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert 10_000 < len(data) <= max_bytes
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        w, h = img.size
    assert abs(w - 1200) <= 50 and abs(h - 900) <= 50


# ----------------------------------------------------------------------------- ILD


@pytest.mark.parametrize("gain_r, expected", [(2.0, SIX_DB), (0.5, -SIX_DB)])
def test_ild_in_band_tone(gain_r: float, expected: float) -> None:
    sr = 16000
    left = _tone(2000.0, 0.5, sr)
    stereo = np.stack([left, gain_r * left]).astype(np.float32)
    times, ild = ild_over_time(stereo, sr)
    assert times.shape == ild.shape == (1 + stereo.shape[1] // 256,)
    np.testing.assert_allclose(ild, expected, atol=0.1)


def test_ild_broadband_noise_right_louder() -> None:
    sr = 48000
    left = _noise(0.5, sr)
    stereo = np.stack([left, 2.0 * left]).astype(np.float32)
    for band in [(1000.0, 4000.0), None]:
        _, ild = ild_over_time(stereo, sr, band=band)
        np.testing.assert_allclose(ild, SIX_DB, atol=0.1)


def test_ild_band_ignores_out_of_band_energy() -> None:
    sr = 16000
    common = _tone(2000.0, 0.5, sr)
    low = _tone(300.0, 0.5, sr, amp=0.5)  # only in the left ear, outside 1-4 kHz
    stereo = np.stack([common + low, common])
    _, ild_band = ild_over_time(stereo, sr, band=(1000.0, 4000.0))
    _, ild_broad = ild_over_time(stereo, sr, band=None)
    np.testing.assert_allclose(ild_band, 0.0, atol=0.1)
    assert np.all(ild_broad < -10.0)


def test_ild_times_and_smoothing() -> None:
    sr, hop = 16000, 256
    left = _noise(1.0, sr, seed=1)
    gain = np.where(np.arange(left.size) < sr // 2, 2.0, 0.5)  # right louder, then left louder
    stereo = np.stack([left, gain * left])
    times, ild = ild_over_time(stereo, sr, band=None)
    np.testing.assert_allclose(np.diff(times), hop / sr)
    assert times[0] == 0.0
    assert np.all(np.abs(ild[times < 0.4] - SIX_DB) < 0.1)
    assert np.all(np.abs(ild[times > 0.6] + SIX_DB) < 0.1)
    # The switch is spread over more frames by the ~50 ms smoothing, and more by 200 ms.
    counts = []
    for smooth_s in (0.0, 0.05, 0.2):
        _, i = ild_over_time(stereo, sr, band=None, smooth_s=smooth_s)
        counts.append(int(np.sum(np.abs(i) < 5.9)))
    assert counts[0] < counts[1] < counts[2]
    assert counts[2] >= 10


def test_ild_silence_and_short_signals_are_finite() -> None:
    for n in (0, 10, 1000, 8000):
        times, ild = ild_over_time(np.zeros((2, n), np.float32), 16000)
        assert times.shape == ild.shape and ild.size >= 1
        assert np.all(np.isfinite(ild))
        np.testing.assert_allclose(ild, 0.0, atol=1e-9)
    # One silent ear: large but finite.
    stereo = np.stack([np.zeros(4000), _tone(2000.0, 0.25, 16000)])
    _, ild = ild_over_time(stereo, 16000)
    assert np.all(np.isfinite(ild)) and np.all(ild > 60.0)


def test_ild_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"\(2, n\)"):
        ild_over_time(np.zeros((3, 100)), 16000)
    with pytest.raises(ValueError, match="sample_rate"):
        ild_over_time(np.zeros((2, 100)), 0)
    with pytest.raises(ValueError, match="NaN"):
        ild_over_time(np.full((2, 100), np.nan), 16000)


def test_power_spectrogram_peak_and_frames() -> None:
    sr, n_fft, hop = 16000, 1024, 256
    x = _tone(1000.0, 0.3, sr)
    starts, power = power_spectrogram(x, n_fft, hop)
    assert power.shape == (1 + x.size // hop, n_fft // 2 + 1)
    np.testing.assert_array_equal(starts, np.arange(power.shape[0]) * hop)
    peak_hz = np.argmax(power[power.shape[0] // 2]) * sr / n_fft
    assert abs(peak_hz - 1000.0) <= sr / n_fft


# ----------------------------------------------------------------------------- azimuth


def test_source_azimuth_orbit_and_rotated_listener() -> None:
    t = np.array([0.0, 1.0, 3.0])
    orbit = OrbitTrajectory(radius=2.0, period_s=4.0)  # front -> right -> back -> left
    np.testing.assert_allclose(source_azimuth(orbit, None, t), [0.0, 90.0, -90.0], atol=1e-9)
    # A speaker on the right, a listener turned 90 deg to the right: straight ahead.
    speaker = StaticTrajectory(Pose((0.0, 3.0, 0.0)))
    listener = StaticTrajectory(Pose.from_yaw_pitch(yaw=90.0))
    np.testing.assert_allclose(source_azimuth(speaker, listener, t), 0.0, atol=1e-9)


# ----------------------------------------------------------------------------- PNG


def test_plot_binaural_with_orbit(tmp_path: Path) -> None:
    sr = 48000
    src = _noise(2.0, sr)  # white noise: the hardest case for PNG size
    orbit = OrbitTrajectory(radius=1.5, period_s=2.0)
    az = np.radians(360.0 * np.arange(src.size) / sr / 2.0)
    stereo = np.stack([src * (1 - 0.5 * np.sin(az)), src * (1 + 0.5 * np.sin(az))])
    out = plot_binaural(
        tmp_path / "sub" / "orbit.png", stereo.astype(np.float32), sr, speaker=orbit, title="orbit"
    )
    assert out == tmp_path / "sub" / "orbit.png"
    _check_png(out)


def test_plot_binaural_without_trajectories(tmp_path: Path) -> None:
    sr = 16000
    left = _tone(440.0, 1.5, sr) + _tone(2500.0, 1.5, sr, amp=0.05)
    out = plot_binaural(str(tmp_path / "plain.png"), np.stack([left, 0.7 * left]), sr)
    assert isinstance(out, Path)
    _check_png(out)


def test_plot_binaural_short_silence_moving_listener(tmp_path: Path) -> None:
    sr = 16000
    speaker = StaticTrajectory(Pose((2.0, 1.0, 0.0)))
    listener = OrbitTrajectory(radius=0.5, period_s=1.0)
    out = plot_binaural(
        tmp_path / "silent.png", np.zeros((2, 1500), np.float32), sr, speaker, listener
    )
    _check_png(out)


def test_plot_binaural_rejects_bad_shape(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        plot_binaural(tmp_path / "bad.png", np.zeros((100, 2)), 16000)
    assert not (tmp_path / "bad.png").exists()


def test_import_does_not_load_matplotlib(tmp_path: Path) -> None:
    code = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import livesense.audio.plot as plot
        loaded = sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib")
        assert not loaded, loaded
        plot.plot_binaural({str(tmp_path / "x.png")!r}, np.zeros((2, 800)), 8000)
        assert "matplotlib" in sys.modules
        assert "matplotlib.pyplot" not in sys.modules  # no global pyplot/backend state
        print("ok")
        """
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "ok"
