"""The "dsp" prior: the flow starts from (and is conditioned on) the DSP renderer's output."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.audio.trajectory import OrbitTrajectory
from livesense.models.binaural.batched import BatchedNeuralRenderer
from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import FlowBatch, batch_features
from livesense.models.binaural.renderer import NeuralBinauralRenderer
from livesense.streaming.testing import assert_causal, assert_offline_equals_chunked

SR = 48000
HOP = 128
TINY_DSP = BinauralFlowConfig.preset("tiny").replace(prior="dsp", sigma=0.05, t0=0.0)


@pytest.fixture(scope="module")
def model():
    return random_model(TINY_DSP, seed=3)


@pytest.fixture(scope="module")
def still():
    """A model whose velocity is zero: with temperature 0 it returns its prior's centre."""
    m = random_model(TINY_DSP.replace(temperature=0.0), seed=3)
    with torch.no_grad():
        m.out_conv.conv.weight.zero_()
        m.out_conv.conv.bias.zero_()
    return m


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (x + 0.02 * rng.standard_normal(t.shape[0])).astype(np.float32)


def test_config_and_network_shape(model) -> None:
    small = BinauralFlowConfig.preset("small")
    assert (small.prior, small.cond_channels, small.t0) == ("dsp", 4, 0.0)
    assert BinauralFlowConfig.preset("paper").cond_channels == 2
    assert model.in_conv.c_in == 8  # x_t (4) + the DSP render's re/im of both ears (4)


def test_offline_equals_chunked_and_causal(model) -> None:
    x = speech_like(0.4)
    sp = OrbitTrajectory(1.2, 0.5)
    assert_offline_equals_chunked(
        lambda: NeuralBinauralRenderer(model, speaker=sp, max_frames=8), x, atol=1e-4, n_random=1
    )
    assert_causal(lambda: NeuralBinauralRenderer(model, speaker=sp), x, cut=6000)


def test_zero_velocity_renders_exactly_the_dsp_output(still) -> None:
    x = speech_like(0.3)
    sp, turn = Pose((0.3, 1.1, 0.0)), Pose((-1.0, -0.5, 0.2))
    r = NeuralBinauralRenderer(still, speaker=sp)
    d = DspBinauralRenderer(sp)
    s = 7000
    y = [r.step(x[:s])]
    ref = [d.step(x[:s])]
    r.set_speaker_pose(turn, at_sample=s + 100)
    d.set_speaker_pose(turn, at_sample=s + 100)
    y += [r.step(x[s:]), r.flush()]
    ref.append(d.step(x[s:]))
    y_all = np.concatenate([p for p in y if p is not None], axis=-1)
    ref_all = np.concatenate(ref, axis=-1)
    assert y_all.shape == ref_all.shape
    assert np.abs(y_all - ref_all).max() < 1e-5
    # the pose change reached the DSP renderer inside the neural one
    assert np.abs(ref_all - DspBinauralRenderer(sp).process(x)).max() > 1e-3


def test_reset_slot_restarts_the_slot_dsp(still) -> None:
    x0, x1 = speech_like(0.2, 0), speech_like(0.2, 1)
    g = 3000  # off the frame grid: the new stream is rendered after g % hop zeros
    b = BatchedNeuralRenderer(still, slots=2, speaker=Pose((0.0, 1.0, 0.0)))
    outs = [b.step_batch([x0[:g], x0[:g]])]
    b.reset_slot(1, speaker=Pose((0.0, -1.0, 0.0)))
    outs += [b.step_batch([x0[g:], x1[g:]]), b.flush()]
    out = np.concatenate(outs, axis=-1)
    p = g % HOP
    ref = DspBinauralRenderer(Pose((0.0, -1.0, 0.0))).process(
        np.concatenate([np.zeros(p, np.float32), x1[g:]])
    )
    assert np.abs(out[1, :, g:] - ref[:, p:]).max() < 1e-5
    left = DspBinauralRenderer(Pose((0.0, 1.0, 0.0))).process(x0)
    assert np.abs(out[0] - left).max() < 1e-5  # slot 0 untouched by the reset


def test_batch_features_need_the_dsp_render() -> None:
    n = 4 * HOP
    mono, binaural = torch.zeros(1, n), torch.zeros(1, 2, n)
    poses = torch.zeros(1, 14)
    with pytest.raises(ValueError, match="needs FlowBatch.dsp"):
        batch_features(FlowBatch(mono, binaural, poses), TINY_DSP)
    d = torch.randn(1, 2, n)
    cond, y, _ = batch_features(FlowBatch(mono, binaural, poses, d), TINY_DSP)
    assert cond.shape == y.shape == (1, 4, TINY_DSP.n_bins, 4)
    assert cond.abs().max() > 0 and y.abs().max() == 0
