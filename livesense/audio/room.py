"""Shoebox room simulation for binaural training data: image sources, late tail, ambient noise.

:func:`render_room` renders mono speech ``x`` for a moving speaker and a turning listener as

    y = direct + early reflections + late reverberation + ambient noise          # (2, n)

- **Room coordinates** put a corner at the origin with the room along +x, +y, +z (x forward,
  y right, z up as everywhere in livesense). Trajectories stay **listener-relative** (the
  Richard et al. layout: the listener's reference pose is the origin facing +x);
  :class:`RoomConfig` places that reference pose in the room (``listener_position``,
  ``listener_yaw``), so a room point is ``P_L + R_L @ p``.
- **Direct path** is exactly :class:`~livesense.audio.dsp_renderer.DspBinauralRenderer` (delay
  ``d / c`` with HRIR onset compensation, gain ``1 / max(d, 0.25)``, nearest HRIR, filter
  crossfades): "DSP renderer = direct path only" is the baseline by construction.
- **Early reflections**: shoebox image sources (Allen & Berkley 1979) up to ``max_order``;
  each image gets the same delay / 1-over-d gain conventions times its reflection gain
  ``prod(sqrt(1 - alpha_wall))`` and the nearest HRIR of its arrival direction in the head
  frame. Rendering is block-wise (``block`` samples): poses at block boundaries, delay and gain
  ramped linearly per sample inside a block, HRIR changes cross-faded across the block (the
  delayed signal is split between the old and the new filter), all image sources of a block
  summed in the frequency domain (one inverse FFT per block).
- **Late reverberation**: exponentially decaying noise with the Eyring decay of the room
  (``RT60 = 0.161 V / (-S ln(1 - mean alpha))``), energy envelope ``E(t) = 4 pi c / V *
  exp(-13.8 t / RT60)`` (the image-source model's expected energy density for a 1/d source)
  weighted by the fraction of image-source energy at time ``t`` that the early part leaves out,
  so the tail continues the image sources instead of doubling them. Each ear's noise is shaped
  by the diffuse-field HRTF magnitude of that ear; the two ears are decorrelated with the
  diffuse-field coherence ``sinc(2 pi f d / c)`` of ears ``d = 0.175`` m apart (coherent at
  low frequencies, independent above ~1 kHz). The tail is computed for the speaker's position
  at t = 0 (a diffuse field hardly changes when the source moves).
- **Ambient noise**: pink noise per ear (same coherence model), ``noise_db`` below the RMS of
  the rendered speech (both ears).

Absorption is frequency-independent (energy absorption per surface, ordered
``(x=0, x=Lx, y=0, y=Ly, floor, ceiling)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import (
    EAR_OFFSETS,
    SPEED_OF_SOUND,
    Pose,
    quat_multiply,
    quat_to_matrix,
    yaw_quaternion,
)
from livesense.audio.hrtf import HrirSet
from livesense.audio.trajectory import Trajectory, as_trajectory
from livesense.errors import ConfigError

__all__ = [
    "ImageSources",
    "RoomConfig",
    "image_sources",
    "late_reverb_ir",
    "pink_noise",
    "render_room",
    "schroeder_rt60",
]

MIN_DISTANCE = 0.25  # the DSP renderer's 1/d clamp (m)
EAR_SPACING = float(EAR_OFFSETS[1, 1] - EAR_OFFSETS[0, 1])  # 0.175 m


@dataclass(frozen=True)
class RoomConfig:
    """A shoebox room and where the listener sits in it (metres, degrees, dB).

    ``absorption``: energy absorption coefficient in [0, 1), one value for all surfaces or six
    ``(x=0, x=Lx, y=0, y=Ly, floor, ceiling)``. ``listener_yaw``: the direction the listener's
    reference pose faces (0 = +x, positive turns right). ``noise_db``: ambient noise level re
    the speech RMS (``None``: no noise). ``seed`` seeds the tail and noise generators.
    """

    size: tuple[float, float, float] = (6.0, 5.0, 3.0)
    absorption: float | tuple[float, ...] = 0.5
    max_order: int = 3
    listener_position: tuple[float, float, float] = (2.5, 2.2, 1.5)
    listener_yaw: float = 0.0
    late_reverb: bool = True
    noise_db: float | None = -35.0
    seed: int = 0
    block: int = 256  # early-reflection render block (samples)
    speed_of_sound: float = SPEED_OF_SOUND

    def __post_init__(self) -> None:
        size = _floats(self.size, "size")
        if len(size) != 3 or min(size) <= 0:
            raise ConfigError(f"room size must be 3 positive lengths in m, got {self.size!r}")
        alpha = _floats(
            (self.absorption,) if isinstance(self.absorption, int | float) else self.absorption,
            "absorption",
        )
        if len(alpha) == 1:
            alpha = alpha * 6
        if len(alpha) != 6 or not all(0.0 <= a < 1.0 for a in alpha):
            raise ConfigError(
                f"room absorption must be one value or 6 values in [0, 1), got {self.absorption!r}"
            )
        pos = _floats(self.listener_position, "listener_position")
        if len(pos) != 3 or not all(0 < p < s for p, s in zip(pos, size, strict=True)):
            raise ConfigError(f"listener position {self.listener_position!r} is not inside {size}")
        if isinstance(self.max_order, bool) or not isinstance(self.max_order, int):
            raise ConfigError(f"max_order must be an int, got {self.max_order!r}")
        if not 0 <= self.max_order <= 12:
            raise ConfigError(f"max_order must be in 0..12, got {self.max_order}")
        if not isinstance(self.block, int) or self.block < 16:
            raise ConfigError(f"room render block must be an int >= 16, got {self.block!r}")
        if self.noise_db is not None and not (math.isfinite(self.noise_db) and self.noise_db < 0):
            raise ConfigError(f"noise_db must be negative (dB below speech), got {self.noise_db}")
        if not (math.isfinite(self.listener_yaw) and self.speed_of_sound > 0):
            raise ConfigError("listener_yaw must be finite and speed_of_sound positive")
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "absorption", alpha)
        object.__setattr__(self, "listener_position", pos)

    # -- presets ---------------------------------------------------------------------------

    @classmethod
    def demo(cls, **overrides: object) -> RoomConfig:
        """livesense's demo room: 6 x 5 x 3 m, absorption 0.5, listener at (2.5, 2.2, 1.5)
        facing +x, noise 35 dB below the speech."""
        return cls(**overrides)  # type: ignore[arg-type]

    @classmethod
    def random(cls, rng: np.random.Generator, **overrides: object) -> RoomConfig:
        """A plausible random room (3.5-9 x 3-7 x 2.4-3.8 m, absorption 0.2-0.8 per surface,
        listener >= 1 m from the side walls, random yaw, noise 25-45 dB below speech)."""
        size = (rng.uniform(3.5, 9.0), rng.uniform(3.0, 7.0), rng.uniform(2.4, 3.8))
        kw: dict[str, object] = dict(
            size=size,
            absorption=tuple(float(a) for a in rng.uniform(0.2, 0.8, 6)),
            listener_position=(
                rng.uniform(1.0, size[0] - 1.0),
                rng.uniform(1.0, size[1] - 1.0),
                rng.uniform(1.1, 1.8),
            ),
            listener_yaw=float(rng.uniform(-180, 180)),
            noise_db=float(rng.uniform(-45.0, -25.0)),
            seed=int(rng.integers(2**31)),
        )
        kw.update(overrides)
        return cls(**kw)  # type: ignore[arg-type]

    # -- derived quantities ----------------------------------------------------------------

    @property
    def volume(self) -> float:
        lx, ly, lz = self.size
        return lx * ly * lz

    @property
    def surface_areas(self) -> np.ndarray:
        """(6,) areas of the surfaces in the absorption order."""
        lx, ly, lz = self.size
        return np.array([ly * lz, ly * lz, lx * lz, lx * lz, lx * ly, lx * ly])

    @property
    def mean_absorption(self) -> float:
        s = self.surface_areas
        return float(np.dot(s, self.absorption) / s.sum())

    def rt60(self, formula: str = "eyring") -> float:
        """Reverberation time in seconds by Eyring (default) or Sabine."""
        s, a = float(self.surface_areas.sum()), self.mean_absorption
        if formula == "sabine":
            return 0.161 * self.volume / max(s * a, 1e-9)
        if formula == "eyring":
            return 0.161 * self.volume / max(-s * math.log(1.0 - a), 1e-9)
        raise ValueError(f"unknown RT60 formula {formula!r}")

    @property
    def listener_rotation(self) -> np.ndarray:
        """(3, 3) listener-reference frame -> room frame."""
        return quat_to_matrix(yaw_quaternion(self.listener_yaw))

    def to_room(self, p: np.ndarray) -> np.ndarray:
        """Listener-relative points (..., 3) -> room coordinates (..., 3)."""
        return np.asarray(self.listener_position) + np.asarray(p) @ self.listener_rotation.T


def _floats(values: object, what: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in values)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise ConfigError(f"room {what} must be numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in vals):
        raise ConfigError(f"room {what} must be finite, got {values!r}")
    return vals


# ----------------------------------------------------------------------------- image sources


class ImageSources(NamedTuple):
    """Image-source lattice of a shoebox: K images of one source.

    mirror (K, 3) in {+1, -1}, shift (K, 3) metres (image = mirror * source + shift),
    gain (K,) product of wall reflection amplitudes, order (K,) number of reflections.
    """

    mirror: np.ndarray
    shift: np.ndarray
    gain: np.ndarray
    order: np.ndarray

    def positions(self, source: np.ndarray) -> np.ndarray:
        """Image positions (K, T, 3) of source positions (T, 3) (room coordinates)."""
        return self.mirror[:, None, :] * np.asarray(source)[None] + self.shift[:, None, :]


def image_sources(
    room: RoomConfig, max_order: int | None = None, min_order: int = 0
) -> ImageSources:
    """All images with ``min_order <= reflections <= max_order`` (default: the room's)."""
    n = room.max_order if max_order is None else max_order
    beta = np.sqrt(1.0 - np.asarray(room.absorption)).reshape(3, 2)  # (axis, wall0/wall1)
    axes = []
    for a in range(3):
        rows = []  # (mirror, shift, gain, order) per axis
        for m in range(-n, n + 1):
            for q in (0, 1):
                k0, k1 = abs(m - q), abs(m)
                if k0 + k1 <= n:
                    rows.append(
                        (
                            1 - 2 * q,
                            2 * m * room.size[a],
                            beta[a, 0] ** k0 * beta[a, 1] ** k1,
                            k0 + k1,
                        )
                    )
        axes.append(np.array(rows))  # (R_a, 4)
    gx, gy, gz = np.meshgrid(*(np.arange(len(r)) for r in axes), indexing="ij")
    sel = [axes[a][g.ravel()] for a, g in enumerate((gx, gy, gz))]  # 3 x (K_all, 4)
    order = sel[0][:, 3] + sel[1][:, 3] + sel[2][:, 3]
    keep = (order <= n) & (order >= min_order)
    mirror = np.stack([s[keep, 0] for s in sel], axis=-1)
    shift = np.stack([s[keep, 1] for s in sel], axis=-1)
    gain = sel[0][keep, 2] * sel[1][keep, 2] * sel[2][keep, 2]
    return ImageSources(mirror, shift, gain, order[keep].astype(np.int64))


# ----------------------------------------------------------------------------- rendering


def render_room(
    mono: np.ndarray,
    sample_rate: int,
    speaker: Trajectory | Pose,
    listener: Trajectory | Pose,
    room: RoomConfig,
    hrirs: HrirSet,
    seed: int | None = None,
) -> np.ndarray:
    """Binaural (2, n) float32 of mono (n,) speech in ``room`` (see the module docstring).

    ``speaker`` and ``listener`` are listener-relative trajectories (the listener's reference
    pose at the origin); ``seed`` overrides ``room.seed`` for the tail and the noise.
    Raises :class:`ConfigError` if the speaker leaves the room.
    """
    x = np.asarray(mono, dtype=np.float64).reshape(-1)  # (n,)
    n, fs = x.shape[0], int(sample_rate)
    spk, lis = as_trajectory(speaker), as_trajectory(listener)
    hr = hrirs.resample(fs)
    rng = np.random.default_rng(room.seed if seed is None else seed)
    if n == 0:
        return np.zeros((2, 0), np.float32)

    direct = DspBinauralRenderer(spk, lis, hr, DspRendererConfig(sample_rate=fs)).step(x)
    y = np.asarray(direct, dtype=np.float64)  # (2, n)

    b = room.block
    nb = -(-n // b)
    t = np.arange(nb + 1) * (b / fs)  # block boundaries (s)
    sp, lp = spk.at(t), lis.at(t)
    src = room.to_room(sp.positions)  # (nb + 1, 3)
    lo, hi = np.zeros(3), np.asarray(room.size)
    bad = np.any((src < lo - 1e-9) | (src > hi + 1e-9), axis=-1)
    if bad.any():
        i = int(np.argmax(bad))
        raise ConfigError(
            f"the speaker leaves the room at t = {t[i]:.2f} s: room position "
            f"{np.round(src[i], 2).tolist()} outside {list(room.size)}"
        )
    head = room.to_room(lp.positions)  # (nb + 1, 3)
    q_room = quat_multiply(yaw_quaternion(room.listener_yaw), lp.orientations)
    rot = quat_to_matrix(q_room)  # (nb + 1, 3, 3) head -> room

    if room.max_order > 0:
        y += _render_reflections(x, fs, src, head, rot, room, hr)
    if room.late_reverb:
        tail = late_reverb_ir(room, fs, hr, src[0], rng)  # (2, L)
        from scipy.signal import oaconvolve  # lazy: scipy takes ~1.2 s to import

        y += oaconvolve(x[None], tail, axes=-1)[:, :n]
    if room.noise_db is not None:
        level = math.sqrt(float(np.mean(y * y))) * 10.0 ** (room.noise_db / 20.0)
        y += level * pink_noise(n, fs, rng)
    return y.astype(np.float32)


def _render_reflections(
    x: np.ndarray,
    fs: int,
    src: np.ndarray,
    head: np.ndarray,
    rot: np.ndarray,
    room: RoomConfig,
    hr: HrirSet,
) -> np.ndarray:
    """Image sources of order 1..max_order: x (n,), poses at the nb + 1 block boundaries
    (src, head (nb + 1, 3), rot (nb + 1, 3, 3)) -> (2, n)."""
    from scipy.spatial import cKDTree  # lazy: scipy takes ~1.2 s to import

    n, b, c = x.shape[0], room.block, room.speed_of_sound
    nb = src.shape[0] - 1
    ims = image_sources(room, min_order=1)
    k = ims.gain.shape[0]
    rel = np.einsum("kti,tij->ktj", ims.positions(src) - head[None], rot)  # (K, nb + 1, 3)
    dist = np.linalg.norm(rel, axis=-1)  # (K, nb + 1)
    delay = np.maximum(dist * (fs / c) - hr.onset, 0.0)
    gain = ims.gain[:, None] / np.maximum(dist, MIN_DISTANCE)
    unit = rel / np.maximum(dist, 1e-9)[..., None]
    kidx = cKDTree(hr.directions).query(unit.reshape(-1, 3))[1].reshape(k, nb + 1)

    taps = hr.n_taps
    pieces = -(-(b + taps - 1) // b)  # output of one block spans this many blocks
    nfft = pieces * b
    spec = np.fft.rfft(hr.irs.astype(np.float64), n=nfft, axis=-1)  # (M, 2, F)
    pad = int(math.ceil(delay.max())) + 2
    xp = np.concatenate([np.zeros(pad), x, np.zeros(b + 2)])
    out = np.zeros((2, (nb + pieces) * b))
    ramp = np.arange(b) / b  # (b,)
    step = max(1, 4096 // k)  # blocks per pass: bounds scratch memory
    for b0 in range(0, nb, step):
        b1 = min(nb, b0 + step)
        sl, sl1 = slice(b0, b1), slice(b0 + 1, b1 + 1)
        dly = delay[:, sl, None] + (delay[:, sl1] - delay[:, sl])[..., None] * ramp  # (K, B', b)
        gn = gain[:, sl, None] + (gain[:, sl1] - gain[:, sl])[..., None] * ramp
        pos = np.arange(b0 * b, b1 * b, dtype=np.float64).reshape(b1 - b0, b) + pad - dly
        i0 = pos.astype(np.int64)
        frac = pos - i0
        x0 = xp[i0]
        v = (x0 + frac * (xp[i0 + 1] - x0)) * gn  # (K, B', b) delayed, gained
        ks, ke = kidx[:, sl], kidx[:, sl1]  # (K, B')
        vf = np.fft.rfft(v, n=nfft, axis=-1)  # (K, B', F)
        acc = np.einsum("kbf,kbef->bef", vf, spec[ks])  # (B', 2, F)
        moved = ks != ke
        if moved.any():  # crossfade: the ramped part goes through the new filter instead
            kk, bb = np.nonzero(moved)
            vr = np.fft.rfft(v[kk, bb] * ramp, n=nfft, axis=-1)  # (D, F)
            delta = vr[:, None, :] * (spec[ke[kk, bb]] - spec[ks[kk, bb]])  # (D, 2, F)
            np.add.at(acc, bb, delta)
        yb = np.fft.irfft(acc, n=nfft, axis=-1).reshape(b1 - b0, 2, pieces, b)
        for p in range(pieces):  # overlap-add
            seg = out[:, (b0 + p) * b : (b1 + p) * b].reshape(2, b1 - b0, b)
            seg += yb[:, :, p, :].transpose(1, 0, 2)
    return out[:, :n]


def _coherent_noise(n: int, fs: int, rng: np.random.Generator) -> np.ndarray:
    """Spectra (2, n // 2 + 1) of unit white noise for two ears with diffuse-field coherence."""
    f = np.fft.rfftfreq(n, 1.0 / fs)
    gamma = np.clip(np.sinc(2.0 * f * EAR_SPACING / SPEED_OF_SOUND), 0.0, 1.0)  # (F,)
    w = np.fft.rfft(rng.standard_normal((3, n)), axis=-1)  # common, left, right
    a, s = np.sqrt(gamma), np.sqrt(1.0 - gamma)
    return a * w[0] + s * w[1:]  # (2, F)


def pink_noise(n: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Diffuse pink noise (2, n) (1/f power above 50 Hz), ears coherent at low frequencies,
    unit RMS over both channels."""
    spec = _coherent_noise(n, sample_rate, rng)
    f = np.fft.rfftfreq(n, 1.0 / sample_rate)
    spec *= 1.0 / np.sqrt(np.maximum(f, 50.0))
    y = np.fft.irfft(spec, n=n, axis=-1)
    return y / max(math.sqrt(float(np.mean(y * y))), 1e-12)


def late_reverb_ir(
    room: RoomConfig,
    sample_rate: int,
    hrirs: HrirSet,
    source: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Binaural late-reverberation impulse response (2, L) from emission time, for a 1/d
    (0 dB at 1 m) source at room position ``source`` (3,): the part of the reverberant energy
    that image sources up to ``room.max_order`` leave out (module docstring)."""
    fs, c = int(sample_rate), room.speed_of_sound
    rt60 = room.rt60("eyring")
    # Envelope of the missing image energy: exact lattice up to a high order, smoothed.
    n_all = room.max_order + 10
    ims = image_sources(room, max_order=n_all)
    d = np.linalg.norm(
        ims.positions(np.asarray(source)[None])[:, 0] - room.listener_position, axis=-1
    )
    hop = max(1, fs // 1000)  # 1 ms bins
    t_valid = float(d[ims.order == n_all].min()) / c  # all images up to here are counted
    length = int(math.ceil(fs * (rt60 * 80.0 / 60.0 + float(d.min()) / c)))
    bins = -(-length // hop)
    e = ims.gain**2 / np.maximum(d, MIN_DISTANCE) ** 2
    idx = np.minimum((d / c * fs / hop).astype(np.int64), bins - 1)
    inc = np.bincount(idx, weights=e * (ims.order <= room.max_order), minlength=bins)
    tot = np.bincount(idx, weights=e, minlength=bins)
    kern = np.hanning(7)
    inc, tot = np.convolve(inc, kern, "same"), np.convolve(tot, kern, "same")
    frac = np.where(tot > 0, 1.0 - inc / np.maximum(tot, 1e-30), 0.0)  # (bins,)
    tb = (np.arange(bins) + 0.5) * hop / fs
    frac[tb > t_valid] = 1.0
    t = np.arange(length) / fs
    frac_s = np.interp(t, tb, frac)
    energy = 4.0 * math.pi * c / room.volume * np.exp(-13.8155 * t / rt60)  # per second
    env = np.sqrt(energy * frac_s / fs)  # (L,) amplitude per sample for unit-variance noise
    # Noise shaped by each ear's diffuse-field HRTF magnitude, diffuse coherence between ears.
    spec = _coherent_noise(length, fs, rng)  # (2, F)
    h = np.fft.rfft(hrirs.irs.astype(np.float64), n=max(length, hrirs.n_taps), axis=-1)
    mag = np.sqrt(np.mean(np.abs(h) ** 2, axis=0))  # (2, F') diffuse-field magnitude
    f_h = np.fft.rfftfreq(max(length, hrirs.n_taps), 1.0 / fs)
    f = np.fft.rfftfreq(length, 1.0 / fs)
    spec *= np.stack([np.interp(f, f_h, mag[e]) for e in range(2)])
    noise = np.fft.irfft(spec, n=length, axis=-1)  # (2, L); variance ~ diffuse HRIR energy
    return noise * env


def schroeder_rt60(
    ir: np.ndarray, sample_rate: int, db_range: tuple[float, float] = (-5, -25)
) -> float:
    """RT60 (s) of an impulse response (..., L) (channels summed in energy) by Schroeder
    backward integration and a line fit between ``db_range`` (T20 by default), times 60 / 20."""
    e = np.asarray(ir, dtype=np.float64) ** 2
    e = e.reshape(-1, e.shape[-1]).sum(axis=0)  # (L,)
    edc = np.cumsum(e[::-1])[::-1]
    edc_db = 10.0 * np.log10(np.maximum(edc / edc[0], 1e-30))
    hi, lo = db_range
    i0, i1 = int(np.argmax(edc_db <= hi)), int(np.argmax(edc_db <= lo))
    if i1 <= i0 + 1:
        raise ValueError("impulse response too short for the Schroeder fit")
    t = np.arange(i0, i1) / sample_rate
    slope = np.polyfit(t, edc_db[i0:i1], 1)[0]  # dB/s
    return -60.0 / slope
