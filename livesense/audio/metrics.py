"""Binaural evaluation metrics as the field computes them (Richard et al. 2021 evaluation code),
plus interaural cue errors.

All functions take prediction and target as (2, n) arrays (numpy or torch; left, right) at
48 kHz (the STFT sizes are the field's, in samples) and return Python floats:

- :func:`l2`: mean squared waveform error over channels and samples.
- :func:`amplitude_error`: mean ``| |P| - |T| |`` on an STFT (n_fft 2048, win 1920, hop 480,
  Hann, centred, reflect padding as ``torch.stft``).
- :func:`phase_error`: same STFT; bins where both the target's and the prediction's energy
  ``|Re| + |Im|`` exceed 0.2 x the mean target energy; mean of ``pi - | |a_p - a_t| - pi |``.
- :func:`mrstft`: spectral convergence + log-magnitude L1 (magnitudes clamped at
  ``sqrt(1e-7)``), each averaged over the resolutions (1024, 120, 600), (2048, 240, 1200),
  (512, 50, 240) (FFT size, hop, window).
- :func:`ild_error`: mean ``|ILD_p - ILD_t|`` (dB), ``ILD = 10 log10(E_R / E_L)`` per
  ERB-spaced band (32 bands, 100 Hz - 16 kHz) and frame on an STFT (n_fft 1024, hop 256); only
  bins whose target energy is within 40 dB of the target's maximum bin enter the band sums.
- :func:`ipd_error`: mean wrapped ``|IPD_p - IPD_t|`` (radians), ``IPD = angle(R conj(L))``,
  over the same kept bins below 1.5 kHz.

:func:`evaluate_pair` returns all of them; :func:`average_weighted` averages per-sequence
results weighted by length, as the field reports them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import torch

__all__ = [
    "METRIC_KEYS",
    "amplitude_error",
    "average_weighted",
    "erb_band_edges",
    "evaluate_pair",
    "ild_error",
    "ipd_error",
    "l2",
    "mrstft",
    "phase_error",
]

METRIC_KEYS = ("l2", "amplitude", "phase", "mrstft", "ild", "ipd")
MRSTFT_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))

ArrayLike = np.ndarray | torch.Tensor


def _as_tensor(x: ArrayLike) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x))
    t = t.to(torch.float64)
    if t.ndim == 1:
        t = t[None]
    return t.reshape(-1, t.shape[-1])  # (C, n)


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = _as_tensor(pred), _as_tensor(target)
    if p.shape != t.shape:
        raise ValueError(f"prediction {tuple(p.shape)} and target {tuple(t.shape)} differ")
    return p, t


def _stft(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    """Complex STFT (C, F, frames) of (C, n), Hann window of ``win`` centred in ``n_fft``."""
    window = torch.hann_window(win, dtype=x.dtype)
    return torch.stft(
        x, n_fft, hop_length=hop, win_length=win, window=window, center=True, return_complex=True
    )


def l2(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean squared error of the waveforms over channels and samples."""
    p, t = _pair(pred, target)
    return float(torch.mean((p - t) ** 2))


def amplitude_error(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute STFT magnitude difference (n_fft 2048, win 1920, hop 480)."""
    p, t = _pair(pred, target)
    return float(
        torch.mean(torch.abs(_stft(p, 2048, 480, 1920).abs() - _stft(t, 2048, 480, 1920).abs()))
    )


def phase_error(pred: ArrayLike, target: ArrayLike, ignore_below: float = 0.2) -> float:
    """Mean wrapped phase error (radians) over the bins where both signals carry energy."""
    p, t = _pair(pred, target)
    sp, st = _stft(p, 2048, 480, 1920).reshape(-1), _stft(t, 2048, 480, 1920).reshape(-1)
    e_t = st.real.abs() + st.imag.abs()
    e_p = sp.real.abs() + sp.imag.abs()
    keep = (e_t > ignore_below * e_t.mean()) & (e_p > ignore_below * e_t.mean())
    if not bool(keep.any()):
        return 0.0
    diff = torch.abs(torch.angle(sp[keep]) - torch.angle(st[keep]))
    return float(torch.mean(math.pi - torch.abs(diff - math.pi)))


def mrstft(pred: ArrayLike, target: ArrayLike) -> float:
    """Multi-resolution STFT loss: mean spectral convergence + mean log-magnitude L1."""
    p, t = _pair(pred, target)
    sc = mag = 0.0
    for n_fft, hop, win in MRSTFT_RESOLUTIONS:
        mp = torch.sqrt(torch.clamp(_stft(p, n_fft, hop, win).abs() ** 2, min=1e-7))
        mt = torch.sqrt(torch.clamp(_stft(t, n_fft, hop, win).abs() ** 2, min=1e-7))
        sc += float(torch.linalg.norm(mt - mp) / torch.linalg.norm(mt))
        mag += float(torch.mean(torch.abs(torch.log(mt) - torch.log(mp))))
    k = len(MRSTFT_RESOLUTIONS)
    return sc / k + mag / k


def erb_band_edges(n_bands: int = 32, f_min: float = 100.0, f_max: float = 16000.0) -> np.ndarray:
    """(n_bands + 1,) band edges in Hz equally spaced on the ERB-number scale (Glasberg & Moore)."""
    erb = np.linspace(
        21.4 * np.log10(1 + 0.00437 * f_min), 21.4 * np.log10(1 + 0.00437 * f_max), n_bands + 1
    )
    return (10 ** (erb / 21.4) - 1) / 0.00437


def _cue_spectra(
    p: torch.Tensor, t: torch.Tensor, range_db: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """STFTs (2, F, frames) of pred and target (n_fft 1024, hop 256) and the kept-bin mask
    (F, frames): target energy (both ears) within ``range_db`` of its maximum."""
    if p.shape[0] != 2:
        raise ValueError(f"binaural cues need 2 channels, got {p.shape[0]}")
    sp, st = _stft(p, 1024, 256, 1024).numpy(), _stft(t, 1024, 256, 1024).numpy()
    e = np.sum(np.abs(st) ** 2, axis=0)  # (F, frames)
    keep = e >= e.max() * 10 ** (-range_db / 10) if e.max() > 0 else np.zeros(e.shape, bool)
    return sp, st, keep


def ild_error(
    pred: ArrayLike,
    target: ArrayLike,
    sample_rate: int = 48000,
    n_bands: int = 32,
    range_db: float = 40.0,
) -> float:
    """Mean absolute ILD difference in dB over ERB bands x frames (kept bins only)."""
    p, t = _pair(pred, target)
    sp, st, keep = _cue_spectra(p, t, range_db)
    freqs = np.fft.rfftfreq(1024, 1.0 / sample_rate)
    edges = erb_band_edges(n_bands, 100.0, min(16000.0, sample_rate / 2))
    band = np.digitize(freqs, edges) - 1  # (F,), -1 / n_bands: outside
    errs = []
    eps = 1e-20
    for b in range(n_bands):
        rows = band == b
        if not rows.any():
            continue
        k = keep[rows]  # (f_b, frames)
        used = k.any(axis=0)  # frames with kept bins in this band
        if not used.any():
            continue

        def ild(s: np.ndarray, rows: np.ndarray = rows, k: np.ndarray = k) -> np.ndarray:
            e = np.abs(s[:, rows]) ** 2 * k  # (2, f_b, frames)
            return 10 * np.log10((e[1].sum(0) + eps) / (e[0].sum(0) + eps))  # (frames,)

        errs.append(np.abs(ild(sp) - ild(st))[used])
    return float(np.mean(np.concatenate(errs))) if errs else 0.0


def ipd_error(
    pred: ArrayLike,
    target: ArrayLike,
    sample_rate: int = 48000,
    f_max: float = 1500.0,
    range_db: float = 40.0,
) -> float:
    """Mean wrapped absolute IPD difference (radians) over kept bins below ``f_max``."""
    p, t = _pair(pred, target)
    sp, st, keep = _cue_spectra(p, t, range_db)
    freqs = np.fft.rfftfreq(1024, 1.0 / sample_rate)
    keep = keep & (freqs < f_max)[:, None]
    if not keep.any():
        return 0.0
    ipd_p = np.angle(sp[1] * np.conj(sp[0]))[keep]
    ipd_t = np.angle(st[1] * np.conj(st[0]))[keep]
    return float(np.mean(np.abs(np.angle(np.exp(1j * (ipd_p - ipd_t))))))


def evaluate_pair(pred: ArrayLike, target: ArrayLike, sample_rate: int = 48000) -> dict[str, float]:
    """All metrics of one (2, n) prediction against its (2, n) target."""
    return {
        "l2": l2(pred, target),
        "amplitude": amplitude_error(pred, target),
        "phase": phase_error(pred, target),
        "mrstft": mrstft(pred, target),
        "ild": ild_error(pred, target, sample_rate),
        "ipd": ipd_error(pred, target, sample_rate),
    }


def average_weighted(results: Iterable[tuple[dict[str, float], int]]) -> dict[str, float]:
    """Length-weighted mean of per-sequence metric dicts: [(metrics, n_samples), ...]."""
    items: Sequence[tuple[dict[str, float], int]] = list(results)
    total = sum(n for _, n in items)
    if not items or total <= 0:
        raise ValueError("average_weighted needs at least one result with a positive length")
    keys = items[0][0].keys()
    return {k: sum(m[k] * n for m, n in items) / total for k in keys}
