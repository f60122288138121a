"""Causal building blocks of the BinauralFlow U-Net over (time, frequency).

Every tensor is laid out ``(B, C, F, T)``: batch, channels, frequency bins, time frames.
Causality in time comes from two rules: normalisation statistics are computed per frame
(:class:`FrameGroupNorm`), and time convolutions see only past frames (:class:`CausalConv2d`).
Frequency is treated like an image axis (symmetric padding, stride-2 downsampling).

Streaming: a :class:`CausalConv2d` with ``k_t > 1`` keeps its last ``k_t - 1`` input frames in
a :class:`StreamState` (``hist``), so running the network frame by frame (or chunk by chunk)
on a fresh state computes exactly the same as one pass with zero left padding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CausalConv2d",
    "Downsample",
    "FrameGroupNorm",
    "GaussianFourierEmbedding",
    "ResBlock",
    "StreamState",
    "Upsample",
]


@dataclass
class StreamState:
    """Past activations of one network evaluation, one entry per causal conv (``conv.index``).

    ``hist[i]``: ``(B, C_in, F_in, k_t - 1)`` the last input frames of conv ``i`` (zeros at
    stream start = the zero padding of an offline pass). ``scratch[i]``: ``(B, C_in, F_in,
    k_t - 1 + max_frames)`` preallocated work space, shareable between states that are never
    evaluated concurrently (the solver's evaluations run one after another).
    """

    hist: list[torch.Tensor]
    scratch: list[torch.Tensor]


class CausalConv2d(nn.Module):
    """``k_f x k_t`` convolution: symmetric zero padding in frequency, past-only in time.

    ``stride_f`` downsamples frequency; time keeps its frame rate (stride 1), so the layer
    adds no latency and its receptive field reaches ``k_t - 1`` frames into the past.
    """

    def __init__(
        self, c_in: int, c_out: int, f_in: int, kernel: tuple[int, int] = (3, 3), stride_f: int = 1
    ):
        super().__init__()
        k_f, k_t = kernel
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride=(stride_f, 1), padding=(k_f // 2, 0))
        self.c_in, self.f_in, self.k_t = c_in, f_in, k_t
        self.index = -1  # position in the model's StreamState lists (set by the model)

    def forward(self, x: torch.Tensor, state: StreamState | None = None) -> torch.Tensor:
        # x (B, C_in, F, T) -> (B, C_out, F', T)
        p = self.k_t - 1
        if p == 0:
            return self.conv(x)
        if state is None:  # offline / training: zero history
            return self.conv(F.pad(x, (p, 0)))
        hist, work = state.hist[self.index], state.scratch[self.index]
        n = x.shape[-1]
        work[..., :p].copy_(hist)  # (B, C, F, p) past frames
        work[..., p : p + n].copy_(x)  # (B, C, F, n) new frames
        y = self.conv(work[..., : p + n])
        hist.copy_(work[..., n : n + p])  # keep the newest p input frames
        return y


class FrameGroupNorm(nn.Module):
    """GroupNorm whose statistics are taken per time frame over (channels of a group x freq).

    Standard GroupNorm on ``(B, C, F, T)`` would pool over time and leak the future."""

    def __init__(self, groups: int, channels: int, eps: float = 1e-5):
        super().__init__()
        if channels % groups:
            raise ValueError(f"groups ({groups}) must divide channels ({channels})")
        self.groups, self.eps = groups, eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16):  # statistics in float32
            return self.forward(x.float()).to(x.dtype)
        b, c, f, t = x.shape
        xg = x.reshape(b, self.groups, (c // self.groups) * f, t)  # (B, G, C/G * F, T)
        # Two-pass mean/variance: much faster on CPU than var_mean over a strided axis.
        d = xg - xg.mean(dim=2, keepdim=True)  # (B, G, C/G * F, T), mean (B, G, 1, T)
        xg = d * torch.rsqrt((d * d).mean(dim=2, keepdim=True) + self.eps)
        return torch.addcmul(
            self.bias[:, None, None], xg.reshape(b, c, f, t), self.weight[:, None, None]
        )


class GaussianFourierEmbedding(nn.Module):
    """``[sin(2 pi v W), cos(2 pi v W)]`` with fixed Gaussian ``W ~ N(0, scale^2)`` (Tancik et
    al.): maps low-dimensional inputs (flow time, poses) to features an MLP can use."""

    def __init__(self, in_dim: int, n_freqs: int, scale: float):
        super().__init__()
        self.register_buffer("W", torch.randn(in_dim, n_freqs) * (2 * math.pi * scale))

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        proj = v @ self.W  # (..., n_freqs)
        return torch.cat([proj.sin(), proj.cos()], dim=-1)  # (..., 2 n_freqs)


class ResBlock(nn.Module):
    """(FrameGroupNorm -> SiLU -> causal 3x3 conv) x 2 with the conditioning added in between
    and a residual connection (1x1 conv when the width changes)."""

    def __init__(self, c_in: int, c_out: int, f: int, emb_dim: int, groups: int, k_t: int):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, c_in)
        self.conv1 = CausalConv2d(c_in, c_out, f, (3, k_t))
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = FrameGroupNorm(groups, c_out)
        self.conv2 = CausalConv2d(c_out, c_out, f, (3, k_t))
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, state: StreamState | None
    ) -> torch.Tensor:
        # x (B, C_in, F, T), emb (B, T, E) -> (B, C_out, F, T)
        h = self.conv1(F.silu(self.norm1(x)), state)
        h = h + self.emb(emb).transpose(1, 2)[:, :, None, :]  # (B, C_out, 1, T) per frame
        h = self.conv2(F.silu(self.norm2(h)), state)
        return h + self.skip(x)


class Downsample(nn.Module):
    """Causal stride-2 (frequency) 3 x k_t convolution: F -> (F - 1) // 2 + 1."""

    def __init__(self, c_in: int, c_out: int, f: int, k_t: int):
        super().__init__()
        self.conv = CausalConv2d(c_in, c_out, f, (3, k_t), stride_f=2)

    def forward(self, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        return self.conv(x, state)  # (B, C_out, F', T)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling of frequency to ``f_out`` bins, then a causal 3 x k_t conv."""

    def __init__(self, c_in: int, c_out: int, f_out: int, k_t: int):
        super().__init__()
        self.f_out = f_out
        self.conv = CausalConv2d(c_in, c_out, f_out, (3, k_t))

    def forward(self, x: torch.Tensor, state: StreamState | None) -> torch.Tensor:
        x = F.interpolate(x, size=(self.f_out, x.shape[-1]), mode="nearest")  # (B, C, F_out, T)
        return self.conv(x, state)
