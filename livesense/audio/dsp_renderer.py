"""DSP binaural renderer: propagation delay, distance gain and HRIR filtering of a mono source.

The baseline and fallback of the neural renderer. For mono input ``x`` and speaker/listener
trajectories it computes, per output sample ``n`` (all in the listener's head frame, see
:mod:`livesense.audio.geometry` for the axes)::

    v[n] = g(n) * x[n - D(n)]                     # fractional delay line, linear interpolation
    y_ear[n] = (h_ear(dir) * v)[n]                # HRIR of the nearest measured direction

- **Poses** are evaluated at block boundaries ``k * block`` (absolute sample numbers, so the
  result never depends on how the stream is chunked). Between two boundaries the delay
  ``D`` and gain ``g`` change linearly per sample, so a moving source glides (Doppler
  included) instead of stepping.
- **Delay** ``D = d / c * fs - onset``: the head-centre distance ``d`` over the speed of sound,
  minus the HRIR set's own head-centre arrival index (:attr:`HrirSet.onset`), so the total
  delay to the head centre is ``d / c``. Interaural time differences are NOT computed from
  the geometry: they are those measured in the HRIRs (MIT KEMAR keeps them), which avoids
  counting them twice. Clamped to ``[0, max_distance / c * fs]``.
- **Gain** ``ref_distance / max(d, min_distance)`` (1/d, 0 dB at 1 m, at most +12 dB).
- **HRIR filtering** is a uniformly partitioned overlap-save convolution (partitions of
  ``block`` taps, FFT size ``2 * block``, a frequency-domain delay line of input spectra and
  precomputed spectra of every HRIR partition). When the nearest direction differs between the
  two boundaries of a block, the block is rendered with both filters and cross-faded linearly
  across the block, so direction changes never click.

Timing: **latency 0, granularity 1**. Every ``step`` returns exactly as many output samples as
it consumed (output sample ``k`` belongs to input sample ``k``). The block that is still
incomplete is rendered with its future input zero-padded; a causal convolution makes that exact
for the samples already present, and the block is rendered again once more input arrives. Poses
for the boundary ending the current block are evaluated when the block starts (at most one
block, 2.7 ms at the default 128, of *pose* look-ahead; no signal look-ahead).

Live pose updates (:meth:`DspBinauralRenderer.set_speaker_pose`) take effect at the first block
boundary at or after their sample that has not been evaluated yet, and are ramped over a block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from livesense.audio.geometry import (
    DEFAULT_LISTENER,
    DEFAULT_SPEAKER,
    SPEED_OF_SOUND,
    Pose,
    quat_rotate,
    quat_to_matrix,
)
from livesense.audio.hrtf import HrirSet, load_hrirs
from livesense.audio.trajectory import (
    PoseControlled,
    PoseSchedule,
    StaticTrajectory,
    Trajectory,
    as_trajectory,
)
from livesense.errors import ConfigError
from livesense.streaming.processor import Chunk, StreamProcessor

__all__ = ["DspBinauralRenderer", "DspRendererConfig", "DspRendererState"]


@dataclass(frozen=True)
class DspRendererConfig:
    """Settings of :class:`DspBinauralRenderer` (distances in metres, offsets in body frames)."""

    sample_rate: int = 48000
    block: int = 128  # partition / pose-update block in samples (128 = 2.7 ms at 48 kHz)
    speed_of_sound: float = SPEED_OF_SOUND
    ref_distance: float = 1.0  # distance with gain 1
    min_distance: float = 0.25  # gain clamp: at most ref_distance / min_distance
    max_distance: float = 50.0  # delay clamp; sizes the delay line
    compensate_onset: bool = True  # subtract the HRIR set's head-centre arrival from the delay
    crossfade: bool = True  # crossfade filters when the direction changes within a block
    source_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # mouth, speaker body frame
    listener_offset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # head centre, listener frame
    max_blocks_per_pass: int = 64  # bounds the scratch memory of one pass over a long chunk

    def __post_init__(self) -> None:
        for name in ("sample_rate", "block", "max_blocks_per_pass"):
            v = getattr(self, name)
            if not isinstance(v, int | np.integer) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"DspRendererConfig.{name} must be a positive int, got {v!r}")
        for name in ("speed_of_sound", "ref_distance", "min_distance", "max_distance"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"DspRendererConfig.{name} must be a positive number, got {v!r}")
        if self.max_distance <= self.min_distance:
            raise ConfigError("DspRendererConfig.max_distance must exceed min_distance")
        for name in ("source_offset", "listener_offset"):
            v = getattr(self, name)
            if len(v) != 3 or not all(math.isfinite(float(c)) for c in v):
                raise ConfigError(f"DspRendererConfig.{name} must be 3 finite numbers, got {v!r}")


@dataclass
class DspRendererState:
    """Preallocated streaming state (absolute sample numbers count from the stream start)."""

    hist: np.ndarray  # (capacity,) float64 input history; hist[i] is input sample base + i
    base: int  # absolute sample number of hist[0]
    fill: int  # valid samples in hist
    n_in: int  # samples consumed = samples emitted
    n_done: int  # first sample of the oldest incomplete block (multiple of block)
    v_prev: np.ndarray  # (block,) delayed+gained input of the block before n_done
    x_hist: np.ndarray  # (P - 1, block + 1) complex input spectra of the P - 1 blocks before
    bnd_delay: np.ndarray  # (J,) cached boundary values at n_done + j * block, J in {0, 1, 2}
    bnd_gain: np.ndarray  # (J,)
    bnd_dir: np.ndarray  # (J,) int64 HRIR index
    speaker: PoseSchedule
    listener: PoseSchedule


class DspBinauralRenderer(StreamProcessor, PoseControlled):
    """Mono ``(n,)`` / ``(1, n)`` float audio (numpy or torch) -> binaural ``(2, n)`` float32
    of the same type, for a speaker and a listener moving along trajectories (or fixed poses).

    ``latency = 0`` and ``granularity = 1``: each step returns as many samples as it consumed.
    """

    latency = 0
    granularity = 1

    def __init__(
        self,
        speaker: Trajectory | Pose = DEFAULT_SPEAKER,
        listener: Trajectory | Pose = DEFAULT_LISTENER,
        hrirs: HrirSet | None = None,
        config: DspRendererConfig | None = None,
    ):
        self.config = cfg = config or DspRendererConfig()
        self.speaker = as_trajectory(speaker)
        self.listener = as_trajectory(listener)
        hr = hrirs if hrirs is not None else load_hrirs(None, cfg.sample_rate)
        self.hrirs = hr.resample(cfg.sample_rate)
        b = cfg.block
        self._spectra = self.hrirs.partition_spectra(b)  # (M, 2, P, b + 1) complex128
        self._n_part = self._spectra.shape[2]
        self._dirs_t = np.ascontiguousarray(self.hrirs.directions.T)  # (3, M)
        self._fs = float(cfg.sample_rate)
        self._onset = self.hrirs.onset if cfg.compensate_onset else 0.0
        self._max_delay = cfg.max_distance / cfg.speed_of_sound * self._fs
        self._pad = int(math.ceil(self._max_delay)) + 2  # history kept behind n_done
        self._piece = cfg.max_blocks_per_pass * b
        self._capacity = self._pad + b + self._piece + 1
        self._ramp = np.arange(b) / b  # (b,) crossfade / interpolation weights
        self._src_off = np.array(cfg.source_offset, dtype=np.float64)
        self._lis_off = np.array(cfg.listener_offset, dtype=np.float64)
        self.reset()

    # ------------------------------------------------------------------ public API

    @property
    def block(self) -> int:
        return self.config.block

    @property
    def latency_s(self) -> float:
        return self.latency / self._fs

    def reset(self) -> None:
        b, p = self.config.block, self._n_part
        self.state = DspRendererState(
            hist=np.zeros(self._capacity),
            base=-self._pad,
            fill=self._pad,  # the zeros before sample 0
            n_in=0,
            n_done=0,
            v_prev=np.zeros(b),
            x_hist=np.zeros((p - 1, b + 1), dtype=np.complex128),
            bnd_delay=np.zeros(0),
            bnd_gain=np.zeros(0),
            bnd_dir=np.zeros(0, dtype=np.int64),
            speaker=PoseSchedule(self.speaker),
            listener=PoseSchedule(self.listener),
        )

    def set_speaker_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        """Move the speaker to ``pose`` (or onto a trajectory) from input sample ``at_sample``
        (default: the next sample to be consumed)."""
        self._schedule(self.state.speaker, pose, at_sample)

    def set_listener_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        """Move/turn the listener to ``pose`` from input sample ``at_sample`` (default: next)."""
        self._schedule(self.state.listener, pose, at_sample)

    def step(self, chunk: Chunk) -> Chunk | None:
        """Consume mono ``(n,)`` or ``(1, n)``; return ``(2, n)`` (None when ``n == 0``)."""
        is_torch = isinstance(chunk, torch.Tensor)
        x = chunk.detach().cpu().numpy() if is_torch else np.asarray(chunk)
        if x.ndim == 2 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 1:
            raise ValueError(
                f"DspBinauralRenderer expects mono audio shaped (n,) or (1, n), got {x.shape}"
            )
        if x.shape[0] == 0:
            return None
        if x.shape[0] <= self._piece:
            y = self._render(x)
        else:
            y = np.concatenate(
                [self._render(x[i : i + self._piece]) for i in range(0, x.shape[0], self._piece)],
                axis=-1,
            )
        return torch.from_numpy(y) if is_torch else y

    # ------------------------------------------------------------------ internals

    def _schedule(
        self, track: PoseSchedule, pose: Pose | Trajectory, at_sample: int | None
    ) -> None:
        track.set(pose, float(self.state.n_in if at_sample is None else int(at_sample)))

    def _write(self, x: np.ndarray) -> None:
        """Append input to the history, first dropping what no delay can reach any more."""
        s = self.state
        n = x.shape[0]
        if s.fill + n + 1 > self._capacity:
            drop = (s.n_done - self._pad) - s.base
            s.hist[: s.fill - drop] = s.hist[drop : s.fill]
            s.base += drop
            s.fill -= drop
        s.hist[s.fill : s.fill + n] = x
        s.fill += n
        s.n_in += n

    def _render(self, x: np.ndarray) -> np.ndarray:
        """Consume up to ``max_blocks_per_pass`` blocks of input; return their (2, n) output."""
        s, b, n_part = self.state, self.config.block, self._n_part
        n_out = s.n_in
        self._write(x)
        n0, avail = s.n_done, s.n_in - s.n_done
        rows, full = -(-avail // b), avail // b

        # Pose-derived values at the rows + 1 boundaries n0 + j * b (cached ones reused).
        have = s.bnd_delay.shape[0]
        if have < rows + 1:
            d, g, k = self._boundaries(n0 + b * np.arange(have, rows + 1))
            s.bnd_delay = np.concatenate([s.bnd_delay, d])
            s.bnd_gain = np.concatenate([s.bnd_gain, g])
            s.bnd_dir = np.concatenate([s.bnd_dir, k])
        delay, gain, dirs = s.bnd_delay, s.bnd_gain, s.bnd_dir

        # Delay line + gain, per sample; samples not yet received are zero.
        ramp = self._ramp
        dly = (delay[:-1, None] + (delay[1:] - delay[:-1])[:, None] * ramp).ravel()[:avail]
        gn = (gain[:-1, None] + (gain[1:] - gain[:-1])[:, None] * ramp).ravel()[:avail]
        pos = np.arange(n0 - s.base, n0 - s.base + avail, dtype=np.float64) - dly
        i0 = pos.astype(np.int64)  # pos >= 0: truncation == floor
        frac = pos - i0
        h0 = s.hist[i0]
        v = np.zeros((rows + 1) * b)  # block before n0, then the rows blocks
        v[:b] = s.v_prev
        v[b : b + avail] = (h0 + frac * (s.hist[i0 + 1] - h0)) * gn
        v2 = v.reshape(rows + 1, b)

        # Overlap-save frames [previous block, block] -> spectra, frequency-domain delay line.
        frames = np.concatenate([v2[:-1], v2[1:]], axis=1)  # (rows, 2b)
        spec = np.fft.rfft(frames, axis=-1)  # (rows, b + 1)
        x_all = np.concatenate([s.x_hist, spec]) if n_part > 1 else spec  # (P - 1 + rows, F)

        new = dirs[1:]
        old = dirs[:-1]
        if self.config.crossfade and (new != old).any():
            both = self._spectra[np.concatenate([old, new])]  # (2 rows, 2, P, F)
            acc = self._accumulate(x_all, both, rows, twice=True)  # (2 rows, 2, F)
            y = np.fft.irfft(acc, n=2 * b, axis=-1)[..., b:]  # (2 rows, 2, b)
            y_old, y_new = y[:rows], y[rows:]
            out = y_old + (y_new - y_old) * ramp  # (rows, 2, b)
        else:
            acc = self._accumulate(x_all, self._spectra[old], rows, twice=False)
            out = np.fft.irfft(acc, n=2 * b, axis=-1)[..., b:]  # (rows, 2, b)
        out = out.transpose(1, 0, 2).reshape(2, rows * b)[:, n_out - n0 : avail]

        # Advance past the complete blocks.
        if full:
            s.n_done = n0 + full * b
            s.v_prev = v[full * b : (full + 1) * b].copy()
            if n_part > 1:
                s.x_hist = x_all[full : full + n_part - 1].copy()
            s.bnd_delay, s.bnd_gain, s.bnd_dir = delay[full:], gain[full:], dirs[full:]
            next_eval = s.n_done + b * s.bnd_delay.shape[0]
            s.speaker.prune(next_eval)
            s.listener.prune(next_eval)
        return out.astype(np.float32)

    def _accumulate(
        self, x_all: np.ndarray, filt: np.ndarray, rows: int, twice: bool
    ) -> np.ndarray:
        """sum_p X[block - p] * H_p: x_all (P - 1 + rows, F), filt (R, 2, P, F) -> (R, 2, F)."""
        n_part = self._n_part
        acc = None
        for p in range(n_part):
            xp = x_all[n_part - 1 - p : n_part - 1 - p + rows]  # (rows, F)
            if twice:
                xp = np.concatenate([xp, xp])
            term = xp[:, None, :] * filt[:, :, p, :]
            acc = term if acc is None else acc + term
        return acc

    def _boundaries(self, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Delay (samples), gain and HRIR index at absolute sample numbers (T,)."""
        s, cfg = self.state, self.config
        t = samples / self._fs
        sp = s.speaker.at(samples, t)
        src = sp.positions  # (T, 3)
        if self._src_off.any():
            src = src + quat_rotate(sp.orientations, self._src_off)
        fixed = s.listener.only
        if isinstance(fixed, StaticTrajectory):
            head = np.array(fixed.pose_.position)
            if self._lis_off.any():
                head = head + fixed.rotation @ self._lis_off
            rel = (src - head) @ fixed.rotation  # (T, 3) = R^T (src - head)
        else:
            lp = s.listener.at(samples, t)
            head = lp.positions
            if self._lis_off.any():
                head = head + quat_rotate(lp.orientations, self._lis_off)
            rot = quat_to_matrix(lp.orientations)  # (T, 3, 3) head -> world
            rel = ((src - head)[:, None, :] @ rot)[:, 0, :]  # (T, 3)
        dist = np.sqrt(np.sum(rel * rel, axis=-1))  # (T,)
        # argmax of the dot product needs no normalisation; the bias picks "ahead" at d == 0.
        idx = np.argmax((rel + _AHEAD) @ self._dirs_t, axis=-1)
        delay = dist * (self._fs / cfg.speed_of_sound) - self._onset
        delay = np.minimum(np.maximum(delay, 0.0), self._max_delay)
        gain = cfg.ref_distance / np.maximum(dist, cfg.min_distance)
        return delay, gain, idx


_AHEAD = np.array([1e-12, 0.0, 0.0])
