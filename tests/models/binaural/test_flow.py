"""Conditional flow matching: the spectral representation, overfitting one clip."""

from __future__ import annotations

import time

import numpy as np
import torch

from livesense.audio.stft import StreamingSTFT
from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import (
    FlowBatch,
    batch_features,
    channels_to_spec,
    flow_matching_loss,
    spec_to_channels,
    stft_frames,
    train_step,
)


def _clip(cfg: BinauralFlowConfig, seconds: float) -> FlowBatch:
    n = round(seconds * cfg.sample_rate)
    t = np.arange(n) / cfg.sample_rate
    mono = 0.3 * np.sin(2 * np.pi * 300 * t) + 0.2 * np.sin(2 * np.pi * 1100 * t)
    left = 0.8 * np.roll(mono, 12)
    right = 0.4 * np.roll(mono, 40)
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    poses = torch.tensor([[1.0, 0.5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1]])
    return FlowBatch(f(mono)[None], f(np.stack([left, right]))[None], poses)


def test_spectral_representation() -> None:
    cfg = BinauralFlowConfig.preset("tiny")
    x = torch.randn(2, 3000)
    spec = stft_frames(x, cfg)
    stream = StreamingSTFT(cfg.stft).process(x)
    assert spec.shape == (2, cfg.n_bins, 3000 // cfg.hop)
    assert torch.allclose(spec, stream, atol=1e-4)
    for compress, scale in [(1.0, 1.0), (0.3, 0.1)]:
        ch = spec_to_channels(spec, compress, scale)  # (2, 2, F, T)
        assert ch.shape == (2, 2, cfg.n_bins, spec.shape[-1])
        assert torch.allclose(channels_to_spec(ch, compress, scale), spec, atol=1e-3, rtol=1e-4)
    assert torch.equal(spec_to_channels(spec)[:, 0], spec.real)


def test_overfit_one_clip() -> None:
    cfg = BinauralFlowConfig.preset("tiny").replace(channels=8)
    model = random_model(cfg, seed=0)
    batch = _clip(cfg, 0.08)
    mono, y, poses = batch_features(batch, cfg)

    def eval_loss() -> float:
        g = torch.Generator().manual_seed(123)
        with torch.no_grad():
            return float(
                sum(flow_matching_loss(model, mono, y, poses, cfg.sigma, g) for _ in range(8)) / 8
            )

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    initial = eval_loss()
    start = time.perf_counter()
    losses = [train_step(model, opt, batch, g) for _ in range(250)]
    final = eval_loss()
    print(f"overfit: loss {initial:.4f} -> {final:.4f} in {time.perf_counter() - start:.1f} s")
    assert np.isfinite(losses).all()
    assert final < 0.5 * initial
