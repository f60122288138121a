"""The DSP binaural renderer as batched torch ops: fixed-size chunks for many slot rows at once.

It mirrors :class:`~livesense.audio.dsp_renderer.DspBinauralRenderer` (read that module for the
model) for a table of ``capacity`` rows, each an independent stream, on any device (cpu, cuda,
meta). One :meth:`DspSlots.render` call renders ``blocks`` DSP blocks (``chunk = blocks *
block`` samples) for the rows in ``idx``; the caller evaluates each row's trajectories at the
``blocks + 1`` block boundaries and passes the poses, so the hot path is pure tensor maths: no
host sync, no CPU tensor, fixed shapes (CUDA-graph capturable). Per row and output sample
``n = n0 + j * block + i`` (``n0`` the row's samples so far, ``0 <= i < block``)::

    rel_j = R_lis(j)^T (src(j) - head(j)),  d_j = |rel_j|       # head frame, boundary j
    D_j = clamp(d_j / c * fs - onset, 0, max_delay),  g_j = ref / max(d_j, min_distance)
    D(n) = D_j + (D_{j+1} - D_j) * i / block                     # same for g(n)
    v[n] = g(n) * lerp(x, n - D(n))                              # fractional delay line
    Y_e(block j) = irfft(sum_p V[j - p] * H_{k, e, p})[block:]   # overlap-save, P partitions

with ``V[j] = rfft([v(block j - 1), v(block j)])`` and ``H_{k, e, p}`` the spectra of the HRIR
partitions (:meth:`HrirSet.partition_spectra`) of the nearest direction ``k = argmax((rel +
tiny ahead bias) . dirs)``. With ``crossfade`` every block is rendered with the filters of both
its boundaries and cross-faded, ``y_old + (y_new - y_old) * i / block`` (exactly ``y_old`` when
they are equal, which is what the numpy renderer computes then).

State per row: the last ``pad = ceil(max_delay) + 2`` input samples, the delayed and gained
block before the chunk (``v_prev``) and the input spectra of the ``P - 1`` blocks before it.
Geometry and fractional delay positions are float64; the filtering is float32 / complex64
(within 2e-5 of the float64 numpy renderer for unit-scale input).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from livesense.audio.dsp_renderer import DspRendererConfig
from livesense.audio.hrtf import HrirSet
from livesense.errors import ConfigError

__all__ = ["DspSlots"]

_AHEAD = (1e-12, 0.0, 0.0)  # the numpy renderer's bias: "ahead" when the distance is 0


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cross product of (..., 3) tensors (broadcasting), the numpy helper's formula."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=-1)


def _quat_rotate(q: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Rotate vectors (..., 3) by unit quaternions (..., 4) xyzw (geometry.quat_rotate)."""
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * _cross(u, v)
    return v + w * t + _cross(u, t)


def _quat_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) head -> world of quaternions (..., 4) (geometry's formula)."""
    x, y, z, w = q.unbind(-1)
    return torch.stack(
        [
            torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        dim=-2,
    )


class DspSlots:
    """DSP renderer state for `capacity` slot rows, rendering fixed chunks of `blocks` DSP blocks.

    Every tensor lives on ``device``; the state tensors (:attr:`hist`, :attr:`v_prev`,
    :attr:`x_hist`) keep their storage (updated in place), so a captured graph stays valid.
    """

    def __init__(
        self,
        hrirs: HrirSet,
        config: DspRendererConfig,
        capacity: int,
        blocks: int,
        device: torch.device | str = "cpu",
    ):
        for name, v in (("capacity", capacity), ("blocks", blocks)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"DspSlots {name} must be a positive int, got {v!r}")
        self.config = cfg = config
        self.device = dev = torch.device(device)
        self.capacity, self.blocks = capacity, blocks
        self.block = b = cfg.block
        self.chunk = blocks * b  # samples per chunk
        self.hrirs = hr = hrirs.resample(cfg.sample_rate)
        spectra = hr.partition_spectra(b)  # (M, 2, P, b + 1) complex128
        self.n_part = spectra.shape[2]
        # (P, M, 2, F): one contiguous table per partition, gathered by direction index.
        spectra = np.ascontiguousarray(spectra.transpose(2, 0, 1, 3), dtype=np.complex64)
        self._spectra = torch.from_numpy(spectra).to(dev)
        f64: dict = {"dtype": torch.float64, "device": dev}
        self._dirs_t = torch.from_numpy(np.ascontiguousarray(hr.directions.T)).to(**f64)  # (3, M)
        fs = float(cfg.sample_rate)
        self._samples_per_m = fs / cfg.speed_of_sound
        self._onset = hr.onset if cfg.compensate_onset else 0.0
        self._max_delay = cfg.max_distance / cfg.speed_of_sound * fs
        self.pad = int(math.ceil(self._max_delay)) + 2  # input history behind the chunk
        self._ramp = torch.arange(b, **f64) / b  # (b,) interpolation / crossfade weights
        self._ramp32 = self._ramp.to(torch.float32)
        self._taps = torch.arange(self.pad, self.pad + self.chunk, **f64)  # (chunk,) in the buffer
        self._ahead = torch.tensor(_AHEAD, **f64)
        self._ref = torch.tensor(float(cfg.ref_distance), **f64)
        self._src_off = torch.tensor(cfg.source_offset, **f64) if any(cfg.source_offset) else None
        self._lis_off = (
            torch.tensor(cfg.listener_offset, **f64) if any(cfg.listener_offset) else None
        )
        self.hist = torch.zeros(capacity, self.pad, dtype=torch.float32, device=dev)
        self.v_prev = torch.zeros(capacity, b, dtype=torch.float32, device=dev)
        self.x_hist = torch.zeros(
            capacity, self.n_part - 1, b + 1, dtype=torch.complex64, device=dev
        )

    def reset_rows(self, idx: torch.Tensor) -> None:
        """Fresh streams (silence before sample 0) in rows ``idx`` (int64 on the device)."""
        self.hist.index_fill_(0, idx, 0.0)
        self.v_prev.index_fill_(0, idx, 0.0)
        self.x_hist.index_fill_(0, idx, 0.0)

    def render(
        self, idx: torch.Tensor, x: torch.Tensor, speaker: torch.Tensor, listener: torch.Tensor
    ) -> torch.Tensor:
        """idx (B,) int64 rows (on device; may contain the same row several times ONLY for a
        padding row whose result is discarded), x (B, chunk) float32 mono, speaker/listener
        (B, 7, blocks + 1) float64 poses (position xyz, quaternion xyzw — the Pose layout of
        livesense.audio.geometry) at the block boundaries n0 + j * block, j = 0..blocks (n0 =
        the row's samples rendered so far; the caller evaluates the trajectories and supplies
        them). Returns (B, 2, chunk) float32 and advances the rows' state."""
        n_rows, nb, b, n_part = idx.shape[0], self.blocks, self.block, self.n_part
        poses = (n_rows, 7, nb + 1)
        if x.shape != (n_rows, self.chunk) or speaker.shape != poses or listener.shape != poses:
            raise ValueError(
                f"DspSlots.render expects x {(n_rows, self.chunk)} and poses {poses}, got "
                f"{tuple(x.shape)}, {tuple(speaker.shape)}, {tuple(listener.shape)}"
            )
        delay, gain, dirs = self._boundaries(speaker, listener)  # (B, nb + 1) each

        # Delay line + gain per sample, interpolated linearly within each block.
        ramp = self._ramp
        dly = (delay[:, :-1, None] + (delay[:, 1:] - delay[:, :-1])[:, :, None] * ramp).reshape(
            n_rows, self.chunk
        )
        gn = (gain[:, :-1, None] + (gain[:, 1:] - gain[:, :-1])[:, :, None] * ramp).reshape(
            n_rows, self.chunk
        )
        buf = torch.cat([self.hist[idx], x.to(torch.float32), x.new_zeros(n_rows, 1)], dim=1)
        pos = self._taps - dly  # (B, chunk) >= 2: buffer index of the delayed sample
        i0f = pos.floor()
        frac = pos - i0f
        i0 = i0f.to(torch.int64)
        h0 = buf.gather(1, i0).to(torch.float64)
        h1 = buf.gather(1, i0 + 1).to(torch.float64)
        v = ((h0 + frac * (h1 - h0)) * gn).to(torch.float32).view(n_rows, nb, b)

        # Overlap-save frames [previous block, block] -> spectra, frequency-domain delay line.
        v2 = torch.cat([self.v_prev[idx].unsqueeze(1), v], dim=1)  # (B, nb + 1, b)
        frames = torch.cat([v2[:, :-1], v2[:, 1:]], dim=-1)  # (B, nb, 2b)
        spec = torch.fft.rfft(frames, dim=-1)  # (B, nb, F)
        x_all = torch.cat([self.x_hist[idx], spec], dim=1)  # (B, P - 1 + nb, F)

        # sum_p V[j - p] H_p with the filters of both boundaries of each block (old, new).
        if self.config.crossfade:
            pair = torch.stack([dirs[:, :-1], dirs[:, 1:]], dim=2)  # (B, nb, 2)
        else:
            pair = dirs[:, :-1, None]  # (B, nb, 1)
        acc = x_all[:, n_part - 1 : n_part - 1 + nb, None, None, :] * self._spectra[0][pair]
        for p in range(1, n_part):  # (B, nb, 1 or 2, 2 ears, F)
            acc += (
                x_all[:, n_part - 1 - p : n_part - 1 - p + nb, None, None, :]
                * self._spectra[p][pair]
            )
        y = torch.fft.irfft(acc, n=2 * b, dim=-1)[..., b:]  # (B, nb, 1 or 2, 2, b)
        if self.config.crossfade:
            y_old, y_new = y[:, :, 0], y[:, :, 1]
            out = y_old + (y_new - y_old) * self._ramp32  # (B, nb, 2, b)
        else:
            out = y[:, :, 0]
        out = out.permute(0, 2, 1, 3).reshape(n_rows, 2, self.chunk)

        # Advance the rows: keep the last pad input samples, the last block, P - 1 spectra.
        self.hist.index_copy_(0, idx, buf[:, self.chunk : self.chunk + self.pad])
        self.v_prev.index_copy_(0, idx, v[:, -1])
        if n_part > 1:
            self.x_hist.index_copy_(0, idx, x_all[:, nb:])
        return out

    def _boundaries(
        self, speaker: torch.Tensor, listener: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Delay (samples), gain and HRIR index (B, J) from poses (B, 7, J)."""
        cfg = self.config
        sp = speaker.to(torch.float64).transpose(1, 2)  # (B, J, 7)
        lp = listener.to(torch.float64).transpose(1, 2)
        src = sp[..., :3]
        if self._src_off is not None:
            src = src + _quat_rotate(sp[..., 3:], self._src_off)
        head = lp[..., :3]
        if self._lis_off is not None:
            head = head + _quat_rotate(lp[..., 3:], self._lis_off)
        rot = _quat_to_matrix(lp[..., 3:])  # (B, J, 3, 3) head -> world
        rel = ((src - head).unsqueeze(-2) @ rot).squeeze(-2)  # (B, J, 3) = R^T (src - head)
        dist = (rel * rel).sum(-1).sqrt()  # (B, J)
        # argmax of the dot product needs no normalisation; the bias picks "ahead" at d == 0.
        k = ((rel + self._ahead) @ self._dirs_t).argmax(-1)  # (B, J)
        delay = (dist * self._samples_per_m - self._onset).clamp(0.0, self._max_delay)
        gain = self._ref / dist.clamp(min=cfg.min_distance)
        return delay, gain, k
