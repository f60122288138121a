"""The one fallback: neural to DSP and back, crossfaded, without a click."""

from __future__ import annotations

import numpy as np
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.fallback import FallbackRenderer
from livesense.models.binaural.renderer import NeuralBinauralRenderer

SR = 48000


HOP = 128


def max_steps(y: np.ndarray) -> np.ndarray:
    """Largest sample-to-sample step over both channels, per sample (n - 1,)."""
    return np.abs(np.diff(y, axis=-1)).max(axis=0)


def smooth_model():
    """Zero velocity and almost no prior noise: renders ~ the mono input, smooth like a trained
    model's output (a random network's output is noise, which would hide clicks)."""
    m = random_model(BinauralFlowConfig.preset("tiny").replace(sigma=1e-3), seed=2)
    with torch.no_grad():
        m.out_conv.conv.weight.zero_()
        m.out_conv.conv.bias.zero_()
    return m


def test_dsp_fallback_crossfades_without_click(speech_like) -> None:
    model = smooth_model()
    x = speech_like(0.5, noise=0.0)
    chunk, off, on = 1024, 8 * 1024, 16 * 1024

    def run(crossfade_ms: float) -> tuple[np.ndarray, FallbackRenderer, list[int]]:
        neural = NeuralBinauralRenderer(model, nfe=2)
        dsp = DspBinauralRenderer(config=DspRendererConfig(sample_rate=SR))
        fb = FallbackRenderer(neural, dsp, crossfade_ms=crossfade_ms)
        outs, marks = [], []
        for a in range(0, x.shape[0], chunk):
            if a in (off, on):
                fb.use_dsp(a == off)
                marks.append(fb._n_out)
            outs.append(fb.step(x[a : a + chunk]))
        assert fb.neural.stats.bypassed_frames > 0  # the network really stopped
        assert fb.mode == "neural" and fb.neural_weight == 1.0  # faded back in
        outs.append(fb.flush())
        return np.concatenate([o for o in outs if o is not None], axis=-1), fb, marks

    y, fb, marks = run(5.0)
    assert y.shape == (2, x.shape[0]) and fb.dsp_samples == 0  # flush reset the counters
    steps = max_steps(y)
    windows = [(m - HOP, m + 6 * HOP + 240) for m in marks]
    mask = np.ones(steps.shape[0], bool)
    mask[:2000] = False
    for a, b in windows:
        mask[a - 500 : b + 500] = False
    typical = steps[mask].max()
    for a, b in windows:
        assert steps[a:b].max() <= 3 * typical, (a, steps[a:b].max(), typical)
    # fully on DSP in between: the DSP output, delayed to the neural timing
    dsp_ref = DspBinauralRenderer(config=DspRendererConfig(sample_rate=SR)).process(x)
    mid = slice(marks[0] + 1000, marks[1] - 100)
    assert np.abs(y[:, mid] - dsp_ref[:, mid]).max() < 1e-5
    # without a crossfade the same switches click: the bound is able to fail
    y0, _, _ = run(0.0)
    steps0 = max_steps(y0)
    assert max(steps0[a:b].max() for a, b in windows) > 3 * typical
