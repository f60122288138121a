"""The BinauralFlow velocity network: a causal 2-D U-Net over (frequency, time).

Input ``x_t`` ``(B, 4, F, T)`` (left re/im, right re/im at flow time ``t``), conditioning
``cond`` (concatenated as channels): the mono spectrum ``(B, 2, F, T)`` or, with
``config.prior == "dsp"``, the DSP renderer's binaural spectrum ``(B, 4, F, T)``, flow time ``t`` ``(B,)`` and poses
``(B, 14, T)`` (speaker + listener, 7 numbers each, per frame) entering through Gaussian Fourier
embeddings + MLPs added to the features of every residual block. Output: the velocity
``(B, 4, F, T)``.

Frequency is downsampled by 2 per stage; time never is, so frame ``i`` of the output depends
only on frames ``<= i`` of the input (:attr:`BinauralFlowUNet.receptive_field` frames back).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from livesense.models.binaural.config import POSE_DIM, BinauralFlowConfig
from livesense.models.binaural.layers import (
    CausalConv2d,
    Downsample,
    FrameGroupNorm,
    GaussianFourierEmbedding,
    ResBlock,
    StreamState,
    Upsample,
)

__all__ = ["BinauralFlowUNet", "Conditioning"]


class Conditioning(nn.Module):
    """Flow time and poses -> per-frame embedding ``(B, T, E)``: Fourier features + MLPs."""

    def __init__(self, cfg: BinauralFlowConfig):
        super().__init__()
        e, k = cfg.emb_dim, cfg.fourier_dim
        self.t_fourier = GaussianFourierEmbedding(1, k, cfg.fourier_scale_t)
        self.t_mlp = nn.Sequential(nn.Linear(2 * k, e), nn.SiLU(), nn.Linear(e, e))
        self.pose_fourier = GaussianFourierEmbedding(POSE_DIM, k, cfg.fourier_scale_pose)
        self.pose_mlp = nn.Sequential(nn.Linear(2 * k, e), nn.SiLU(), nn.Linear(e, e))

    def embed_poses(self, poses: torch.Tensor) -> torch.Tensor:
        """(B, 14, T) -> (B, T, E); independent of t, so computed once per chunk."""
        return self.pose_mlp(self.pose_fourier(poses.transpose(1, 2)))

    def forward(self, t: torch.Tensor, pose_emb: torch.Tensor) -> torch.Tensor:
        """t (B,), pose_emb (B, T, E) -> (B, T, E)."""
        e_t = self.t_mlp(self.t_fourier(t[:, None].to(pose_emb.dtype)))  # (B, E)
        return F.silu(e_t[:, None, :] + pose_emb)


class BinauralFlowUNet(nn.Module):
    """Causal U-Net velocity field ``v(x_t, t | mono, poses)`` (see module docstring)."""

    def __init__(self, cfg: BinauralFlowConfig):
        super().__init__()
        self.config = cfg
        w, fs, k_t = cfg.widths, cfg.freq_sizes, cfg.kernel_time
        g, e, n_res = cfg.norm_groups, cfg.emb_dim, cfg.num_res_blocks
        levels = len(w)
        self.cond = Conditioning(cfg)
        # x_t (4) + conditioning (mono: 2, DSP render: 4)
        self.in_conv = CausalConv2d(4 + cfg.cond_channels, w[0], fs[0], (3, k_t))
        self.down_blocks = nn.ModuleList()
        self.downs = nn.ModuleList()
        ch = w[0]
        for lvl in range(levels):
            blocks = nn.ModuleList()
            for _ in range(n_res):
                blocks.append(ResBlock(ch, w[lvl], fs[lvl], e, g, k_t))
                ch = w[lvl]
            self.down_blocks.append(blocks)
            if lvl < levels - 1:
                self.downs.append(Downsample(ch, w[lvl + 1], fs[lvl], k_t))
                ch = w[lvl + 1]
        self.mid = nn.ModuleList([ResBlock(ch, ch, fs[-1], e, g, k_t) for _ in range(2)])
        self.ups = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        for lvl in reversed(range(levels - 1)):
            self.ups.append(Upsample(ch, w[lvl], fs[lvl], k_t))
            blocks = nn.ModuleList([ResBlock(2 * w[lvl], w[lvl], fs[lvl], e, g, k_t)])
            for _ in range(n_res - 1):
                blocks.append(ResBlock(w[lvl], w[lvl], fs[lvl], e, g, k_t))
            self.up_blocks.append(blocks)
            ch = w[lvl]
        self.out_norm = FrameGroupNorm(g, ch)
        self.out_conv = CausalConv2d(ch, 4, fs[0], (3, k_t))
        self.causal_convs = [m for m in self.modules() if isinstance(m, CausalConv2d)]
        for i, m in enumerate(self.causal_convs):
            m.index = i

    # ------------------------------------------------------------------ timing / state

    @property
    def receptive_field(self) -> int:
        """Frames of input (current included) one output frame depends on, per evaluation."""
        return 1 + sum(m.k_t - 1 for m in self.causal_convs)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def init_hist(self, batch: int) -> list[torch.Tensor]:
        """Zero past activations (one :class:`StreamState` ``hist``) for ``batch`` streams."""
        p = self.in_conv.conv.weight  # the trunk's dtype (conditioning may be float32)
        return [
            torch.zeros(batch, m.c_in, m.f_in, m.k_t - 1, dtype=p.dtype, device=p.device)
            for m in self.causal_convs
        ]

    def init_scratch(self, batch: int, max_frames: int) -> list[torch.Tensor]:
        """Work space for chunks of up to ``max_frames`` frames (shared by a renderer's banks)."""
        p = self.in_conv.conv.weight  # the trunk's dtype (conditioning may be float32)
        return [
            torch.zeros(
                batch, m.c_in, m.f_in, m.k_t - 1 + max_frames, dtype=p.dtype, device=p.device
            )
            for m in self.causal_convs
        ]

    # ------------------------------------------------------------------ forward

    def forward(
        self,
        x_t: torch.Tensor,
        cond: torch.Tensor,
        t: torch.Tensor | float,
        poses: torch.Tensor | None = None,
        state: StreamState | None = None,
        pose_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Velocity ``(B, 4, F, T)``.

        x_t (B, 4, F, T), cond (B, 2 or 4, F, T) (``config.cond_channels``), t scalar or (B,), poses (B, 14, T) (or pass the
        precomputed ``pose_emb`` (B, T, E)); ``state`` streams (None: zero history).
        """
        b, _, _, n = x_t.shape
        if pose_emb is None:
            if poses is None:
                raise ValueError("pass poses (B, 14, T) or pose_emb")
            pose_emb = self.cond.embed_poses(poses)  # (B, T, E)
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            t = torch.full((b,), float(t), dtype=pose_emb.dtype, device=x_t.device)
        # The conditioning may run in float32 under a low-precision trunk (the engine's bf16).
        emb = self.cond(t, pose_emb).to(x_t.dtype)  # (B, T, E)
        h = self.in_conv(torch.cat([x_t, cond], dim=1), state)  # (B, C0, F, T)
        skips: list[torch.Tensor] = []
        for lvl, blocks in enumerate(self.down_blocks):
            for blk in blocks:
                h = blk(h, emb, state)
            if lvl < len(self.downs):
                skips.append(h)
                h = self.downs[lvl](h, state)  # (B, C_{l+1}, F_{l+1}, T)
        for blk in self.mid:
            h = blk(h, emb, state)
        for up, blocks in zip(self.ups, self.up_blocks, strict=True):
            h = up(h, state)  # (B, C_l, F_l, T)
            h = torch.cat([h, skips.pop()], dim=1)  # (B, 2 C_l, F_l, T)
            for blk in blocks:
                h = blk(h, emb, state)
        return self.out_conv(F.silu(self.out_norm(h)), state)  # (B, 4, F, T)
