"""Binaural metrics against hand-computed values on tiny signals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from livesense.audio.metrics import (
    METRIC_KEYS,
    amplitude_error,
    average_weighted,
    erb_band_edges,
    evaluate_pair,
    ild_error,
    ipd_error,
    l2,
    mrstft,
    phase_error,
)

SR = 48000


def _sine(freq: float, seconds: float = 0.5, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return amp * np.sin(2 * np.pi * freq * t)


def _noise(seconds: float = 0.5, seed: int = 0) -> np.ndarray:
    return 0.1 * np.random.default_rng(seed).standard_normal((2, int(seconds * SR)))


def test_l2_hand_value() -> None:
    target = np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]])
    assert l2(np.zeros((2, 4)), target) == pytest.approx(30.0 / 8.0)
    assert l2(torch.tensor(target), torch.tensor(target)) == 0.0


def _np_stft_mag(x: np.ndarray) -> np.ndarray:
    """Independent numpy STFT magnitude: n_fft 2048, Hann 1920 centred, hop 480, reflect pad."""
    win = np.zeros(2048)
    win[64 : 64 + 1920] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1920) / 1920)
    xp = np.pad(x, ((0, 0), (1024, 1024)), mode="reflect")
    n_frames = 1 + x.shape[-1] // 480
    frames = np.stack([xp[:, i * 480 : i * 480 + 2048] for i in range(n_frames)], axis=1)
    return np.abs(np.fft.rfft(frames * win, axis=-1))  # (C, frames, F)


def test_amplitude_of_sine_scaled_by_two() -> None:
    x = np.stack([_sine(1000.0), _sine(300.0)])
    expected = float(np.mean(_np_stft_mag(x)))  # mean |2|X| - |X|| = mean |X|
    assert amplitude_error(2 * x, x) == pytest.approx(expected, rel=1e-6)
    # A bin-centred 1 kHz sine (bin 1000 / 23.4375 is not integer; use 46.875 Hz x 32 = 1500 Hz):
    y = np.stack([_sine(1500.0, amp=1.0)] * 2)
    peak = _np_stft_mag(y)[0, 5].max()
    assert peak == pytest.approx(0.5 * 960, rel=1e-3)  # A/2 * sum(hann(1920))


def test_phase_of_polarity_inverted_copy_is_pi() -> None:
    x = _noise()
    assert phase_error(-x, x) == pytest.approx(math.pi, abs=1e-9)
    assert phase_error(x, x) == pytest.approx(0.0, abs=1e-9)


def test_mrstft_zero_for_identical_and_hand_value_for_double() -> None:
    x = _noise()
    assert mrstft(x, x) == pytest.approx(0.0, abs=1e-12)
    # pred = 2 target: spectral convergence 1, log-magnitude L1 ln 2 at every resolution.
    assert mrstft(2 * x, x) == pytest.approx(1.0 + math.log(2.0), rel=1e-4)
    assert mrstft(x + _noise(seed=1), x) > 0.1


def test_ild_of_right_channel_doubled_is_6_02_db() -> None:
    x = _noise()
    pred = x.copy()
    pred[1] *= 2.0
    assert ild_error(pred, x) == pytest.approx(20 * math.log10(2.0), abs=1e-6)
    assert ild_error(x, x) == pytest.approx(0.0, abs=1e-9)


def test_ipd_of_known_interchannel_delay() -> None:
    f0, tau = 468.75, 10  # a bin-centred sine (20 x 23.4375 Hz), 10-sample interaural delay
    t = np.arange(SR) / SR
    left = np.sin(2 * np.pi * f0 * t)
    target = np.stack([left, np.sin(2 * np.pi * f0 * (t - tau / SR))])
    fade = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.1)  # slow fades: no edge leakage
    target *= 0.5 - 0.5 * np.cos(np.pi * fade)
    pred = np.stack([target[0], target[0]])
    expected = 2 * np.pi * f0 * tau / SR  # 0.6136 rad
    assert ipd_error(pred, target) == pytest.approx(expected, rel=0.02)
    assert ipd_error(target, target) == pytest.approx(0.0, abs=1e-9)
    # Above 1.5 kHz nothing counts.
    hi = np.stack([np.sin(2 * np.pi * 4000 * t)] * 2)
    assert ipd_error(hi, hi[::-1] * -1) == 0.0


def test_erb_bands() -> None:
    e = erb_band_edges()
    assert e.shape == (33,)
    assert e[0] == pytest.approx(100.0) and e[-1] == pytest.approx(16000.0)
    assert np.all(np.diff(np.diff(e)) > 0)  # wider bands at high frequencies


def test_evaluate_pair_and_weighted_average() -> None:
    x = _noise()
    m = evaluate_pair(x, x)
    assert tuple(m) == METRIC_KEYS
    assert all(v == pytest.approx(0.0, abs=1e-9) for v in m.values())
    avg = average_weighted([({"l2": 1.0}, 1), ({"l2": 4.0}, 3)])
    assert avg["l2"] == pytest.approx(3.25)
    with pytest.raises(ValueError):
        average_weighted([])
    with pytest.raises(ValueError):
        l2(np.zeros((2, 4)), np.zeros((2, 5)))
