"""Conditional flow matching for BinauralFlow: representation, prior, loss, training step.

- Representation: complex STFT frames (the streaming STFT's framing, so training sees exactly
  what the renderer sees) -> ``scale * |S|**compress * exp(i angle S)`` -> real/imag channels.
  Ears are stacked ear-major: ``(B, 4, F, T)`` = left re, left im, right re, right im.
- Prior: ``z = [mono, mono] + sigma * noise`` (centred on the mono spectrogram, both ears), or
  with ``config.prior == "dsp"`` ``z = dsp + sigma * noise``: centred on the DSP renderer's
  binaural output (geometric delay, 1/d and HRTF of the direct path), which also conditions the
  network. The network then learns what the DSP renderer misses (the room, the noise floor)
  instead of re-learning propagation delays and HRTFs from scratch.
- Path ``x_t = t * y + (1 - t) * z``, target velocity ``y - z``, L1 loss (Liang et al. 2025).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from livesense.models.binaural.config import POSE_DIM, BinauralFlowConfig
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = [
    "NOISE_KEY",
    "FlowBatch",
    "batch_features",
    "channels_to_spec",
    "flow_matching_loss",
    "frame_noise",
    "noise_seed",
    "prior",
    "spec_to_channels",
    "stft_frames",
    "train_step",
]


def stft_frames(x: torch.Tensor, cfg: BinauralFlowConfig) -> torch.Tensor:
    """Offline STFT with the streaming framing: ``(..., n)`` -> complex ``(..., F, n // hop)``.

    Frame ``i`` covers samples ``[i*hop - (n_fft - hop), i*hop + hop)`` (zero left padding),
    the frames :class:`~livesense.audio.stft.StreamingSTFT` emits."""
    lead = x.shape[:-1]
    xf = F.pad(x.reshape(-1, x.shape[-1]), (cfg.n_fft - cfg.hop, 0))
    win = torch.hann_window(cfg.n_fft, dtype=x.dtype, device=x.device)
    s = torch.stft(xf, cfg.n_fft, cfg.hop, window=win, center=False, return_complex=True)
    return s.reshape(*lead, *s.shape[-2:])


def spec_to_channels(spec: torch.Tensor, compress: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """Complex ``(..., F, T)`` -> real ``(..., 2, F, T)`` (re, im of the compressed spectrum)."""
    if compress != 1.0:
        mag = spec.abs()
        spec = spec * (mag.clamp_min(1e-12) ** (compress - 1.0))
    return torch.stack([spec.real, spec.imag], dim=-3) * scale


def channels_to_spec(ch: torch.Tensor, compress: float = 1.0, scale: float = 1.0) -> torch.Tensor:
    """Inverse of :func:`spec_to_channels`: ``(..., 2, F, T)`` -> complex ``(..., F, T)``."""
    spec = torch.complex(ch[..., 0, :, :], ch[..., 1, :, :]) / scale
    if compress != 1.0:
        mag = spec.abs()
        spec = spec * (mag.clamp_min(1e-12) ** (1.0 / compress - 1.0))
    return spec


NOISE_KEY = 1_000_003  # seeds a stream's noise per index: seed * NOISE_KEY + index


def noise_seed(seed: int, index: int) -> int:
    """The generator seed of noise ``index`` (a frame, a training step) of stream ``seed``:
    keyed by the index, so chunking, batching and resuming never change which noise it gets."""
    return (int(seed) * NOISE_KEY + int(index)) & 0x7FFF_FFFF_FFFF_FFFF


_M32 = 0xFFFF_FFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """Wellons' lowbias32 integer hash on int64 tensors holding values in [0, 2**32)."""
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def _signed32(x: int) -> int:
    return x - (1 << 32) if x >= 1 << 31 else x


_K1, _K2, _K3 = _signed32(0x7FEB352D), _signed32(0x846CA68B), _signed32(0x85EBCA6B)


def _mix32_wrap(x: torch.Tensor) -> torch.Tensor:
    """lowbias32 on int32 tensors (two's complement wrap-around; logical shifts by masking):
    the same bits as :func:`_mix32`, at a quarter of the cost of int64 arithmetic."""
    x = x ^ ((x >> 16) & 0xFFFF)
    x = x * _K1
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * _K2
    return x ^ ((x >> 16) & 0xFFFF)


def frame_noise(seeds: torch.Tensor, frames: torch.Tensor, n_bins: int) -> torch.Tensor:
    """Standard normal prior noise ``(S, 4, n_bins, n)`` of frames ``frames`` (S, n) of
    streams ``seeds`` (S,), made on the tensors' device by a counter-based generator: an
    integer hash of (seed, frame index, element), then Box-Muller. A frame's noise depends
    only on its stream's seed and its index, so chunking, batching, slot order and NFE changes
    never change which noise it gets, and no generator is seeded per frame."""
    s = seeds.to(torch.int64)
    key = _mix32((s ^ (s >> 32)) & _M32)  # (S,)
    f = frames.to(torch.int64)
    h = _mix32(key[:, None] ^ _mix32((f * 0x9E3779B9) & _M32))  # (S, n) in [0, 2**32)
    h = torch.where(h >= 1 << 31, h - (1 << 32), h).to(torch.int32)
    c = torch.arange(8 * n_bins, dtype=torch.int32, device=frames.device) * _K3
    u = _mix32_wrap(_mix32_wrap(h[..., None] + c) ^ 0x5BD1E995)  # (S, n, 8F): 2 per element
    u = ((u >> 8) & 0xFFFFFF).to(torch.float32) * (1.0 / (1 << 24))  # [0, 1), 24 bits
    u1, u2 = 1.0 - u[..., 0::2], u[..., 1::2]  # u1 in (0, 1]
    z = torch.sqrt(-2.0 * torch.log(u1)) * torch.cos((2.0 * math.pi) * u2)  # (S, n, 4F)
    return z.reshape(*f.shape, 4, n_bins).permute(0, 2, 3, 1)  # (S, 4, F, n)


def prior(cond: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Prior sample ``z = centre + sigma * noise``: the centre is ``[mono, mono]`` for mono
    conditioning (B, 2, F, T) or the DSP render itself (B, 4, F, T).

    noise (B, 4, F, T) -> (B, 4, F, T)."""
    centre = torch.cat([cond, cond], dim=1) if cond.shape[1] == 2 else cond
    return centre + sigma * noise


@dataclass
class FlowBatch:
    """Training examples: waveforms at the model's rate and per-frame poses.

    mono (B, n), binaural (B, 2, n), poses (B, 14, n // hop) or (B, 14) (held for all frames);
    dsp (B, 2, n): the DSP renderer's output for the same samples (needed when
    ``config.prior == "dsp"``, rendered from the sequence start as the streaming renderer does).
    """

    mono: torch.Tensor
    binaural: torch.Tensor
    poses: torch.Tensor
    dsp: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> FlowBatch:
        dsp = None if self.dsp is None else self.dsp.to(device)
        return FlowBatch(self.mono.to(device), self.binaural.to(device), self.poses.to(device), dsp)


def batch_features(
    batch: FlowBatch, cfg: BinauralFlowConfig
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Waveforms -> (cond (B, 2 or 4, F, T), target y (B, 4, F, T), poses (B, 14, T)).

    cond is the mono spectrum, or the DSP render's for ``cfg.prior == "dsp"``."""
    cond = spec_to_channels(stft_frames(batch.mono, cfg), cfg.compress, cfg.spec_scale)
    b, _, f, n = cond.shape  # (B, 2, F, T)
    y = spec_to_channels(stft_frames(batch.binaural, cfg), cfg.compress, cfg.spec_scale)
    y = y.reshape(b, 4, f, n)  # (B, 2 ears, 2, F, T) -> (B, 4, F, T)
    if cfg.prior == "dsp":
        if batch.dsp is None or batch.dsp.shape != batch.binaural.shape:
            got = None if batch.dsp is None else tuple(batch.dsp.shape)
            raise ValueError(
                f"a 'dsp' prior needs FlowBatch.dsp shaped like binaural "
                f"{tuple(batch.binaural.shape)}, got {got}"
            )
        d = spec_to_channels(stft_frames(batch.dsp, cfg), cfg.compress, cfg.spec_scale)
        cond = d.reshape(b, 4, f, n)
    poses = batch.poses
    if poses.dim() == 2:
        poses = poses[:, :, None].expand(b, POSE_DIM, n)
    if poses.shape != (b, POSE_DIM, n):
        raise ValueError(
            f"poses must be (B, {POSE_DIM}, {n}) or (B, {POSE_DIM}), got {poses.shape}"
        )
    return cond, y, poses.to(cond.dtype)


def flow_matching_loss(
    model: BinauralFlowUNet,
    cond: torch.Tensor,
    target: torch.Tensor,
    poses: torch.Tensor,
    sigma: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L1 between ``v(x_t, t)`` and ``y - z`` at ``t ~ U[0, 1]`` per example.

    cond (B, 2 or 4, F, T), target y (B, 4, F, T), poses (B, 14, T)."""
    b = cond.shape[0]
    noise = torch.randn(target.shape, generator=generator, dtype=target.dtype)
    z = prior(cond, noise.to(target.device), sigma)
    t = torch.rand(b, generator=generator, dtype=target.dtype).to(target.device)
    tb = t[:, None, None, None]
    x_t = tb * target + (1 - tb) * z
    v = model(x_t, cond, t, poses)
    return (v - (target - z)).abs().mean()


def train_step(
    model: BinauralFlowUNet,
    optimizer: torch.optim.Optimizer,
    batch: FlowBatch,
    generator: torch.Generator | None = None,
) -> float:
    """One optimisation step of the flow matching loss on ``batch``; returns the loss."""
    cfg = model.config
    model.train()
    cond, y, poses = batch_features(batch, cfg)
    loss = flow_matching_loss(model, cond, y, poses, cfg.sigma, generator)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())
