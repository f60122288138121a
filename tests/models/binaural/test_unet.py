"""The causal U-Net (streaming state == zero padding, causality, the paper's size) and flow
matching (representation, loss, an overfit run)."""

from __future__ import annotations

import torch

from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.layers import StreamState


def _inputs(cfg: BinauralFlowConfig, frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(2, 4, cfg.n_bins, frames, generator=g)
    mono = torch.randn(2, 2, cfg.n_bins, frames, generator=g)
    poses = torch.randn(2, 14, frames, generator=g)
    return x, mono, poses


def test_paper_preset_size_and_forward() -> None:
    cfg = BinauralFlowConfig.preset("paper")
    model = random_model(cfg, seed=0)
    n = model.num_parameters()
    print(f"BinauralFlow paper preset: {n:,} parameters")
    assert 60e6 < n < 100e6
    x, mono, poses = _inputs(cfg, 3)
    with torch.inference_mode():
        v = model(x[:1], mono[:1], 0.5, poses[:1])
    assert v.shape == (1, 4, 257, 3) and torch.isfinite(v).all()


def test_streaming_state_equals_zero_padding() -> None:
    cfg = BinauralFlowConfig.preset("tiny")
    model = random_model(cfg, seed=3)
    x, mono, poses = _inputs(cfg, 23)
    t = torch.tensor([0.3, 0.8])
    with torch.inference_mode():
        ref = model(x, mono, t, poses)  # (B, 4, F, T), zero history
        state = StreamState(model.init_hist(2), model.init_scratch(2, 8))
        outs, a = [], 0
        for n in [1, 5, 8, 2, 7]:
            sl = slice(a, a + n)
            outs.append(model(x[..., sl], mono[..., sl], t, poses[..., sl], state=state))
            a += n
    got = torch.cat(outs, dim=-1)
    assert torch.allclose(got, ref, atol=1e-5), (got - ref).abs().max()
    # the test can fail: a fresh state for the last piece differs
    with torch.inference_mode():
        fresh = StreamState(model.init_hist(2), model.init_scratch(2, 8))
        last = model(x[..., 16:], mono[..., 16:], t, poses[..., 16:], state=fresh)
    assert not torch.allclose(last, ref[..., 16:], atol=1e-3)


def test_model_is_causal_with_finite_receptive_field() -> None:
    cfg = BinauralFlowConfig.preset("tiny")
    model = random_model(cfg, seed=4)
    rf = model.receptive_field
    frames = rf + 20
    x, mono, poses = _inputs(cfg, frames)
    x2, mono2, poses2 = x.clone(), mono.clone(), poses.clone()
    cut = 15
    x2[..., cut:] += 1.0
    mono2[..., cut:] -= 1.0
    poses2[..., cut:] += 0.5
    with torch.inference_mode():
        a = model(x, mono, 0.6, poses)
        b = model(x2, mono2, 0.6, poses2)
    assert torch.equal(a[..., :cut], b[..., :cut])  # the past never sees the future
    assert not torch.allclose(a[..., cut:], b[..., cut:])
    # a change before frame `cut` reaches exactly rf - 1 frames ahead
    x3 = x.clone()
    x3[..., cut] += 1.0
    with torch.inference_mode():
        c = model(x3, mono, 0.6, poses)
    diff = (c - a).abs().amax(dim=(0, 1, 2))  # (T,)
    assert diff[cut + rf - 1] > 0 and torch.all(diff[cut + rf :] == 0)
