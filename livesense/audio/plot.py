"""Diagnostic figure of a binaural rendering: spectrograms, ILD and the source trajectory.

matplotlib is imported lazily inside :func:`plot_binaural` (``import livesense.audio.plot``
never loads it), and the figure is drawn on an explicit Agg canvas, so no global backend is
switched and no display is needed.

Frame conventions are those of :mod:`livesense.audio.geometry`: x forward, y right, z up;
azimuth positive to the right. ILD is right minus left: positive = right ear louder.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from livesense.audio.geometry import EAR_OFFSETS, Pose, direction_angles, head_relative, quat_rotate
from livesense.audio.trajectory import StaticTrajectory, Trajectory

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ild_over_time",
    "plot_binaural",
    "plot_comparison",
    "power_spectrogram",
    "source_azimuth",
]

EPS = 1e-12  # added to powers before any log
MAX_FREQ_HZ = 16000.0
DYNAMIC_RANGE_DB = 80.0
TRAJECTORY_RATE_HZ = 50.0
MAX_SPEC_COLUMNS = 2000  # longer signals are averaged in time for the spectrogram image


def _check_stereo(stereo: np.ndarray, sample_rate: int) -> np.ndarray:
    x = np.asarray(stereo, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2:
        raise ValueError(f"stereo must have shape (2, n), got {x.shape}")
    if not (isinstance(sample_rate, (int, np.integer)) and sample_rate > 0):
        raise ValueError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if not np.all(np.isfinite(x)):
        raise ValueError("stereo contains NaN or inf")
    return x


def _stft_blocks(x: np.ndarray, n_fft: int, hop: int, block: int = 2048) -> Iterator[np.ndarray]:
    """Yield Hann-window STFT power (..., b, K) of centred frames, ``block`` frames at a time."""
    if n_fft < 2 or hop < 1:
        raise ValueError(f"need n_fft >= 2 and hop >= 1, got n_fft={n_fft}, hop={hop}")
    n = x.shape[-1]
    n_frames = 1 + n // hop
    total = max((n_frames - 1) * hop + n_fft, n + 2 * (n_fft // 2))
    lead = [(0, 0)] * (x.ndim - 1)
    xp = np.pad(x, lead + [(n_fft // 2, total - n - n_fft // 2)])
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    offsets = np.arange(n_fft)[None, :]
    for f0 in range(0, n_frames, block):
        idx = np.arange(f0, min(f0 + block, n_frames))[:, None] * hop + offsets  # (b, n_fft)
        spec = np.fft.rfft(xp[..., idx] * window, axis=-1)
        yield spec.real**2 + spec.imag**2


def _n_frames(n: int, hop: int) -> int:
    return 1 + n // hop


def power_spectrogram(
    x: np.ndarray, n_fft: int = 1024, hop: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Hann-window STFT power of signals (..., n): (frame centre samples (F,), power (..., F, K)).

    Frames are centred (``n_fft // 2`` zeros padded on both sides), so frame ``i`` is centred
    on sample ``i * hop`` and there are ``1 + n // hop`` frames (at least one, even for n = 0).
    """
    x = np.asarray(x, dtype=np.float64)
    power = np.concatenate(list(_stft_blocks(x, n_fft, hop)), axis=-2)
    return np.arange(_n_frames(x.shape[-1], hop)) * hop, power


def _smooth(p: np.ndarray, width: int) -> np.ndarray:
    """Moving average along the last axis (edges average the available frames only)."""
    if width <= 1 or p.shape[-1] <= 1:
        return p
    kernel = np.ones(width)
    num = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), -1, p)
    den = np.convolve(np.ones(p.shape[-1]), kernel, mode="same")
    return num / den


def _band_mask(sample_rate: int, n_fft: int, band: tuple[float, float] | None) -> np.ndarray:
    """Boolean (K,) mask of the rfft bins inside ``band`` Hz (all bins if None)."""
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    if band is None:
        return np.ones(freqs.shape, dtype=bool)
    sel = (freqs >= band[0]) & (freqs <= band[1])
    if not np.any(sel):
        raise ValueError(f"band {band} Hz contains no STFT bin (sample_rate {sample_rate})")
    return sel


def _ild_db(band_power: np.ndarray, width: int) -> np.ndarray:
    """ILD in dB (F,) from band powers (2, F) of left/right, smoothed over ``width`` frames."""
    bp = _smooth(band_power, width)
    return 10.0 * np.log10((bp[1] + EPS) / (bp[0] + EPS))


def _smooth_frames(sample_rate: int, hop: int, smooth_s: float) -> int:
    return int(round(smooth_s * sample_rate / hop))


def ild_over_time(
    stereo: np.ndarray,
    sample_rate: int,
    band: tuple[float, float] | None = (1000.0, 4000.0),
    hop: int = 256,
    n_fft: int = 1024,
    smooth_s: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Interaural level difference per STFT frame: (times s (F,), ILD dB (F,)), right minus left.

    Power is summed over ``band`` (Hz; None = broadband), smoothed over ``smooth_s`` seconds
    (moving average of the powers, 0 = none), then ``10 log10((R + eps) / (L + eps))``: positive
    means the right ear is louder. Always finite (silence gives 0 dB). Frame ``i`` is centred on
    ``i * hop / sample_rate`` seconds.
    """
    x = _check_stereo(stereo, sample_rate)
    sel = _band_mask(sample_rate, n_fft, band)
    bp = np.concatenate([p[..., sel].sum(axis=-1) for p in _stft_blocks(x, n_fft, hop)], -1)
    times = np.arange(bp.shape[-1]) * hop / float(sample_rate)
    return times, _ild_db(bp, _smooth_frames(sample_rate, hop, smooth_s))


def source_azimuth(
    speaker: Trajectory, listener: Trajectory | None, times: np.ndarray
) -> np.ndarray:
    """Head-relative azimuth (deg, positive right) of the speaker at ``times`` (T,) seconds.

    ``listener`` None means a listener at the origin facing +x.
    """
    listener = listener if listener is not None else StaticTrajectory(Pose())
    s = speaker.at(times)
    lis = listener.at(times)
    az, _ = direction_angles(head_relative(s.positions, lis.positions, lis.orientations))
    return az


def _break_wraps(t: np.ndarray, az: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Insert NaNs where the azimuth wraps around +-180 so the plotted line is not joined."""
    jumps = np.nonzero(np.abs(np.diff(az)) > 180.0)[0]
    if jumps.size == 0:
        return t, az
    return np.insert(t, jumps + 1, np.nan), np.insert(az, jumps + 1, np.nan)


def _draw_top_down(
    ax: Axes, speaker: Trajectory, listener: Trajectory | None, times: np.ndarray, fig: Figure
) -> None:
    """Top-down world view: x forward plotted up, y right plotted right."""
    from matplotlib.patches import Circle  # lazy: matplotlib takes ~0.8 s, only --plot draws

    listener = listener if listener is not None else StaticTrajectory(Pose())
    s = speaker.at(times).positions
    lis = listener.at(times)
    lp, lq = lis.positions, lis.orientations
    # Plot coordinates: horizontal = y (right), vertical = x (forward).
    pts = np.concatenate([s[:, :2], lp[:, :2]])
    extent = max(float(np.ptp(pts[:, 0])), float(np.ptp(pts[:, 1])), 0.5)
    head_r = max(float(EAR_OFFSETS[1, 1]), 0.06 * extent)

    if np.ptp(lp[:, :2], axis=0).max() > 1e-6:
        ax.plot(lp[:, 1], lp[:, 0], color="0.5", lw=1, ls="--", label="listener path")
    sc = ax.scatter(s[:, 1], s[:, 0], c=times, cmap="viridis", s=8, zorder=3)
    ax.plot(s[0, 1], s[0, 0], "o", ms=8, mfc="none", mec="tab:green", mew=2, label="start")
    ax.plot(s[-1, 1], s[-1, 0], "s", ms=8, mfc="none", mec="tab:red", mew=2, label="end")
    cb = fig.colorbar(sc, ax=ax, shrink=0.7, pad=0.02, aspect=25)
    cb.set_label("speaker time (s)")

    # Listener head at t = 0: circle, nose and ears.
    c = lp[0]
    fwd = quat_rotate(lq[0], np.array([1.0, 0.0, 0.0]))
    right = quat_rotate(lq[0], np.array([0.0, 1.0, 0.0]))
    head = Circle((c[1], c[0]), head_r, fc="wheat", ec="k", lw=1.5, zorder=4, label="listener")
    ax.add_patch(head)
    nose = c + fwd * head_r * 1.6
    for sgn in (-0.45, 0.45):
        base = c + fwd * head_r * 0.9 + right * head_r * sgn
        ax.plot([base[1], nose[1]], [base[0], nose[0]], color="k", lw=1.5, zorder=5)
    for label, sgn in (("L", -1.0), ("R", 1.0)):
        e = c + right * head_r * 1.7 * sgn
        ax.text(e[1], e[0], label, ha="center", va="center", fontsize=8, weight="bold", zorder=5)

    ax.set_aspect("equal", adjustable="box")
    lo = pts.min(axis=0) - 0.15 * extent
    hi = pts.max(axis=0) + 0.15 * extent
    ax.set_xlim(min(lo[1], c[1] - 2 * head_r), max(hi[1], c[1] + 2 * head_r))
    ax.set_ylim(min(lo[0], c[0] - 2 * head_r), max(hi[0], c[0] + 2 * head_r))
    ax.grid(True, alpha=0.3)
    ax.set_xlabel("y: right (m)")
    ax.set_ylabel("x: forward (m)")
    ax.set_title("Top-down view of the scene")
    ax.legend(loc="best", fontsize=7, framealpha=0.8, markerscale=0.7)


def plot_binaural(
    path: str | os.PathLike[str],
    stereo: np.ndarray,
    sample_rate: int,
    speaker: Trajectory | None = None,
    listener: Trajectory | None = None,
    title: str = "",
) -> Path:
    """Write a PNG (about 1200x900 px) summarising a binaural rendering; returns its path.

    Panels: left/right ear spectrograms (dB, shared scale, 0-16 kHz), ILD over time (1-4 kHz
    and broadband, right minus left) and, when ``speaker`` is given, its head-relative azimuth
    on the ILD time axis plus a top-down view of the scene (``listener`` None = a listener at
    the origin facing +x). ``stereo`` is (2, n) with row 0 = left ear.
    """
    # lazy: matplotlib takes ~0.8 s to import and only --plot draws
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = _check_stereo(stereo, sample_rate)
    n = x.shape[1]
    duration = n / sample_rate
    n_fft, hop = 1024, 256
    nyq = sample_rate / 2.0
    fmax = min(MAX_FREQ_HZ, nyq)

    # One pass over the STFT: band powers for the ILD and a (time-pooled) dB spectrogram.
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    keep = freqs <= fmax
    n_frames = _n_frames(n, hop)
    pool = max(1, -(-n_frames // MAX_SPEC_COLUMNS))  # frames averaged per displayed column
    band = (1000.0, min(4000.0, nyq)) if nyq > 1100.0 else None
    sel_band = _band_mask(sample_rate, n_fft, band)
    bp_band, bp_broad, cols = [], [], []
    for p in _stft_blocks(x, n_fft, hop, block=pool * max(1, 2048 // pool)):
        bp_band.append(p[..., sel_band].sum(axis=-1))
        bp_broad.append(p.sum(axis=-1))
        starts = np.arange(0, p.shape[-2], pool)
        counts = np.diff(np.append(starts, p.shape[-2]))
        cols.append(np.add.reduceat(p[..., keep], starts, axis=-2) / counts[:, None])
    bb = np.concatenate(bp_broad, axis=-1)  # (2, F)
    db = 10.0 * np.log10(np.concatenate(cols, axis=-2) + EPS)  # (2, F / pool, K')
    vmax = max(float(db.max()), 10.0 * np.log10(EPS) + DYNAMIC_RANGE_DB)
    vmin = vmax - DYNAMIC_RANGE_DB
    t_frames = np.arange(n_frames) * hop / sample_rate
    t_end = max(duration, t_frames[-1], 1e-3)

    width = _smooth_frames(sample_rate, hop, 0.05)
    ild_band = _ild_db(np.concatenate(bp_band, axis=-1), width)
    ild_broad = _ild_db(bb, width)
    # Hide ILD where the signal is more than 60 dB below its loudest frame (ratio is noise).
    level = _smooth(bb.sum(axis=0), width)
    quiet = 10 * np.log10(level + EPS) < 10 * np.log10(level.max() + EPS) - 60.0
    ild_band = np.where(quiet, np.nan, ild_band)
    ild_broad = np.where(quiet, np.nan, ild_broad)
    t_band = t_frames

    fig = Figure(figsize=(12, 9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    has_traj = speaker is not None
    if has_traj:
        gs = fig.add_gridspec(3, 2, width_ratios=[2.4, 1], height_ratios=[1, 1, 1.1])
        ax_l = fig.add_subplot(gs[0, 0])
        ax_r = fig.add_subplot(gs[1, 0], sharex=ax_l, sharey=ax_l)
        ax_ild = fig.add_subplot(gs[2, 0], sharex=ax_l)
        ax_top = fig.add_subplot(gs[0:2, 1])
        ax_info = fig.add_subplot(gs[2, 1])
    else:
        gs = fig.add_gridspec(3, 1, height_ratios=[1, 1, 1.1])
        ax_l = fig.add_subplot(gs[0, 0])
        ax_r = fig.add_subplot(gs[1, 0], sharex=ax_l, sharey=ax_l)
        ax_ild = fig.add_subplot(gs[2, 0], sharex=ax_l)

    col_s = pool * hop / sample_rate  # seconds per displayed column
    t0 = -hop / sample_rate / 2
    extent = (t0, t0 + db.shape[-2] * col_s, freqs[0] / 1e3, freqs[keep][-1] / 1e3)
    im = None
    for ax, spec, name in ((ax_l, db[0], "Left ear"), (ax_r, db[1], "Right ear")):
        im = ax.imshow(
            spec.T,
            origin="lower",
            aspect="auto",
            extent=extent,
            cmap="magma",
            vmin=vmin,
            vmax=vmax,
            interpolation="nearest",
        )
        ax.set_title(f"{name} spectrogram")
        ax.set_ylabel("frequency (kHz)")
        ax.set_ylim(0, fmax / 1e3)
    cb = fig.colorbar(im, ax=[ax_l, ax_r], pad=0.01, shrink=0.9)
    cb.set_label("power (dB, shared scale)")
    ax_l.set_xlim(0, t_end)

    ax_ild.axhline(0.0, color="k", lw=0.8)
    ax_ild.plot(t_band, ild_band, color="tab:blue", lw=1.5, label="ILD 1-4 kHz")
    ax_ild.plot(t_band, ild_broad, color="tab:orange", lw=1.0, alpha=0.8, label="ILD broadband")
    finite = np.concatenate([ild_band[np.isfinite(ild_band)], ild_broad[np.isfinite(ild_broad)]])
    lim = float(np.clip(np.abs(finite).max() * 1.15 if finite.size else 0.0, 3.0, 40.0))
    ax_ild.set_ylim(-lim, lim)
    ax_ild.set_xlabel("time (s)")
    ax_ild.set_ylabel("ILD (dB, right - left)")
    ax_ild.set_title("Interaural level difference (positive = right ear louder), ~50 ms smoothing")
    ax_ild.grid(True, alpha=0.3)
    handles, labels = ax_ild.get_legend_handles_labels()

    if has_traj:
        assert speaker is not None
        n_traj = max(2, int(np.ceil(t_end * TRAJECTORY_RATE_HZ)) + 1)
        t_traj = np.linspace(0.0, t_end, n_traj)
        az = source_azimuth(speaker, listener, t_traj)
        ax_az = ax_ild.twinx()
        ta, aa = _break_wraps(t_traj, az)
        (line,) = ax_az.plot(ta, aa, color="tab:green", lw=1.5, ls="--", label="source azimuth")
        ax_az.set_ylim(-190, 190)
        ax_az.set_yticks([-180, -90, 0, 90, 180])
        ax_az.set_ylabel("source azimuth (deg, + = right)", color="tab:green")
        ax_az.tick_params(axis="y", colors="tab:green")
        handles.append(line)
        labels.append(line.get_label())
        _draw_top_down(ax_top, speaker, listener, t_traj, fig)

        ax_info.axis("off")
        a0, a1 = (float(np.round(a)) + 0.0 for a in (az[0], az[-1]))  # no "-0"
        mean_ild = float(np.nanmean(ild_band)) if np.any(np.isfinite(ild_band)) else 0.0
        info = [
            f"duration: {duration:.2f} s @ {sample_rate} Hz",
            f"azimuth start/end: {a0:+.0f} / {a1:+.0f} deg",
            f"azimuth range: {az.min():+.0f} .. {az.max():+.0f} deg",
            f"mean ILD 1-4 kHz: {mean_ild:+.1f} dB",
            f"RMS L / R: {_rms_db(x[0]):.1f} / {_rms_db(x[1]):.1f} dBFS",
        ]
        ax_info.legend(handles, labels, loc="upper left", fontsize=9, borderaxespad=0)
        ax_info.text(
            0.0, 0.55, "\n".join(info), va="top", ha="left", fontsize=9, family="monospace"
        )
    else:
        ax_ild.legend(handles, labels, loc="upper right", fontsize=8, framealpha=0.8)

    fig.suptitle(title or "Binaural rendering", fontsize=14)

    return _save_png(fig, Path(path))


def _save_png(fig: Figure, out: Path, max_bytes: int = 300_000) -> Path:
    """Save ``fig`` as a truecolour PNG, or as a 256-colour palette PNG if that is too big."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=fig.dpi)
    data = buf.getvalue()
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(data) <= max_bytes:
        out.write_bytes(data)
        return out
    # Noisy spectrograms compress badly; an adaptive palette keeps the file small.
    with Image.open(io.BytesIO(data)) as img:
        pal = img.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    pal.save(out, format="PNG", optimize=True)
    return out


def _rms_db(v: np.ndarray) -> float:
    return float(10.0 * np.log10(np.mean(v * v) + EPS)) if v.size else -120.0


def plot_comparison(
    renders: dict[str, np.ndarray],
    out: str | os.PathLike,
    sample_rate: int = 48000,
    title: str = "",
    seconds: float = 4.0,
) -> Path:
    """A PNG comparing renders of one sequence: a left-ear spectrogram (dB) per render, one
    row each in the given order (keys are the row labels), plus the ILD per frame of all of
    them; the first ``seconds``. ``renders`` values are (2, n) stereo."""
    # lazy: matplotlib takes ~0.8 s to import and only --plot needs it
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = list(renders.items())
    n = min(int(seconds * sample_rate), min(np.asarray(x).shape[-1] for _, x in rows))
    fig = Figure(figsize=(10, 2.2 * (len(rows) + 1)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows) + 1, 1, sharex=True)
    n_fft, hop = 1024, 256
    for ax, (label, x) in zip(axes, rows, strict=False):
        frames, p = power_spectrogram(np.asarray(x)[:, :n], n_fft, hop)  # (2, frames, bins)
        db = 10 * np.log10(p[0].T + 1e-10)  # (bins, frames)
        t = frames / sample_rate
        f = np.fft.rfftfreq(n_fft, 1 / sample_rate) / 1000
        ax.pcolormesh(t, f, db, shading="auto", vmin=-90, vmax=max(float(db.max()), -40.0))
        ax.set_ylim(0, 16)
        ax.set_ylabel("kHz")
        ax.set_title(f"{label}: left ear", fontsize=9, loc="left")
    ax = axes[-1]
    for label, x in rows:
        band = (375.0, sample_rate / 2)
        t, ild = ild_over_time(np.asarray(x)[:, :n], sample_rate, band, hop, n_fft, smooth_s=0.0)
        ax.plot(t, ild, label=label, lw=1)
    ax.set_ylabel("ILD dB (R/L)")
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return out
