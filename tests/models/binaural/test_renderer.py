"""The streaming neural renderer: offline == chunked, causality, poses, batching with per-slot
reset, NFE degradation and the DSP fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import Pose
from livesense.audio.trajectory import OrbitTrajectory
from livesense.errors import ConfigError
from livesense.models.binaural.batched import BatchedNeuralRenderer
from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.fallback import FallbackRenderer
from livesense.models.binaural.nfe import NfePolicy
from livesense.models.binaural.renderer import NeuralBinauralRenderer
from livesense.streaming.testing import assert_causal, assert_offline_equals_chunked

SR = 48000
HOP = 128
OVERLAP = 384


@pytest.fixture(scope="module")
def model():
    return random_model("tiny", seed=1)


def speech_like(seconds: float, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (x + noise * rng.standard_normal(t.shape[0])).astype(np.float32)


def max_steps(y: np.ndarray) -> np.ndarray:
    """Largest sample-to-sample step over both channels, per sample (n - 1,)."""
    return np.abs(np.diff(y, axis=-1)).max(axis=0)


@pytest.mark.parametrize(("solver", "nfe"), [("euler", 2), ("midpoint", 2)])
def test_offline_equals_chunked(model, solver: str, nfe: int) -> None:
    x = speech_like(0.5)
    r = NeuralBinauralRenderer(model, nfe=nfe, solver=solver)
    assert r.latency == OVERLAP and r.granularity == HOP
    assert r.stats is not None and r._banks.ensure(nfe).plan.eval_times[0] == 0.5  # early skip
    assert_offline_equals_chunked(
        lambda: NeuralBinauralRenderer(model, nfe=nfe, solver=solver, max_frames=8),
        x,
        atol=1e-4,
        n_random=1,
    )
    y = r.process(x)
    assert y.shape == (2, x.shape[0]) and y.dtype == np.float32
    # the harness can fail: another seed gives another output
    y2 = NeuralBinauralRenderer(model, nfe=nfe, solver=solver, seed=5).process(x)
    assert np.abs(y2 - y).max() > 1e-3


def test_causal(model) -> None:
    x = speech_like(0.2)
    assert_causal(lambda: NeuralBinauralRenderer(model, nfe=2), x, cut=5000)
    assert_causal(lambda: NeuralBinauralRenderer(model, nfe=2), x, cut=5120)


def test_torch_io_and_empty_chunks(model) -> None:
    x = speech_like(0.1)
    r = NeuralBinauralRenderer(model)
    ref = r.process(x[:3000])
    assert r.step(torch.from_numpy(x[:0])) is None
    got = [r.step(torch.from_numpy(x[None, :3000])), r.flush()]
    assert all(isinstance(g, torch.Tensor) for g in got)
    assert np.allclose(torch.cat(got, dim=-1).numpy(), ref, atol=1e-4)
    with pytest.raises(ValueError, match="mono"):
        r.step(np.zeros((2, 10), dtype=np.float32))


def test_pose_updates_apply_from_their_frame(model) -> None:
    x = speech_like(0.25)
    base = NeuralBinauralRenderer(model).process(x)
    for s in (6000, 6016):  # inside frame 46: sample 46 * 128 = 5888 .. 6015, and frame 47
        r = NeuralBinauralRenderer(model)
        head = r.step(x[:s])
        r.set_speaker_pose(Pose((0.0, 2.0, 0.0)), at_sample=s)
        y = np.concatenate([head, r.step(x[s:]), r.flush()], axis=-1)
        diff = np.abs(y - base).max(axis=0)
        first = int(np.argmax(diff > 1e-6))
        frame = s // HOP  # the frame sample s arrives in; its window starts OVERLAP earlier
        assert frame * HOP - OVERLAP <= first < frame * HOP - OVERLAP + HOP, (s, first)
        assert diff.max() > 1e-4
    # a trajectory at construction changes the rendering
    orbit = NeuralBinauralRenderer(model, speaker=OrbitTrajectory(1.0, 0.5)).process(x)
    assert np.abs(orbit - base).max() > 1e-4


def test_batched_equals_single_stream_per_slot(model) -> None:
    xs = [speech_like(0.2, seed=i) for i in range(3)]
    poses = [Pose((1.0, 0.0, 0.0)), Pose((0.0, -1.0, 0.0)), Pose((-2.0, 1.0, 0.5))]
    b = BatchedNeuralRenderer(model, slots=3, nfe=2, seed=7)
    for i, p in enumerate(poses):
        b.set_speaker_pose(p, slot=i)
    x = np.stack(xs)[:, None, :]  # (3, 1, n)
    out = np.concatenate(
        [b.step_batch(x[..., a : a + 1000]) for a in range(0, x.shape[-1], 1000)] + [b.flush()],
        axis=-1,
    )
    assert out.shape == (3, 2, x.shape[-1])
    for i in range(3):
        single = NeuralBinauralRenderer(model, speaker=poses[i], nfe=2, seed=7).process(xs[i])
        assert np.abs(out[i] - single).max() < 1e-4, i


def test_reset_slot_isolates_sessions(model) -> None:
    n, g = 9000, 4096  # reset at a hop boundary
    x0, x1, x1b = speech_like(n / SR, 0), speech_like(n / SR, 1), speech_like(n / SR, 2)

    def run(other: np.ndarray, reset: bool, pose: Pose | None) -> np.ndarray:
        b = BatchedNeuralRenderer(model, slots=2, nfe=2)
        if pose is not None:
            b.set_speaker_pose(pose, slot=1)
        outs = [b.step_batch([x0[:g], other[:g]])]
        if reset:
            b.reset_slot(1, speaker=Pose((0.0, 1.0, 0.0)))
        outs += [b.step_batch([x0[g:], other[g:]]), b.flush()]
        return np.concatenate(outs, axis=-1)

    a = run(x1, False, None)
    b = run(x1b, True, Pose((3.0, 0.0, 0.0)))
    assert np.array_equal(a[0], b[0]) or np.abs(a[0] - b[0]).max() < 1e-6  # slot 0 untouched
    assert np.abs(a[1] - b[1]).max() > 1e-3
    # after the reset, slot 1 renders its new stream like a fresh single-stream renderer
    fresh = NeuralBinauralRenderer(model, speaker=Pose((0.0, 1.0, 0.0)), nfe=2)
    ref = fresh.process(x1b[g:])
    assert np.abs(b[1, :, g:] - ref).max() < 1e-4
    assert np.all(b[1, :, g - OVERLAP : g] == 0)  # the old stream's unfinished tail is muted


def test_reset_slot_off_the_frame_grid(model) -> None:
    n, g = 7000, 3000  # 3000 % 128 = 56: the new stream is rendered after 56 zeros
    x0, x1 = speech_like(n / SR, 0), speech_like(n / SR, 1)
    b = BatchedNeuralRenderer(model, slots=2, nfe=1)
    outs = [b.step_batch([x0[:g], x0[:g]])]
    b.reset_slot(1)
    outs += [b.step_batch([x0[g:], x1[g:]]), b.flush()]
    out = np.concatenate(outs, axis=-1)
    p = g % HOP
    ref = NeuralBinauralRenderer(model, nfe=1).process(
        np.concatenate([np.zeros(p, np.float32), x1[g:]])
    )
    assert np.abs(out[1, :, g:] - ref[:, p:]).max() < 1e-4
    # after flush the batch is fresh; None is an idle (silent) slot
    assert b.step_batch([None, x1[:256]]).shape == (2, 2, 0)
    out2 = b.step_batch([None, x1[256:768]])
    assert out2.shape == (2, 2, 768 - OVERLAP) and np.abs(out2[1]).max() > 0
    with pytest.raises(ValueError, match="lock-step"):
        b.step_batch([x1[:10], x1[:11]])


def test_nfe_switch_is_continuous_and_converges(model) -> None:
    x = speech_like(0.5)
    chunk, switch = 1024, 12 * 1024
    r = NeuralBinauralRenderer(model, nfe=6)
    outs = []
    for a in range(0, x.shape[0], chunk):
        if a == switch:
            r.set_nfe(1)
        outs.append(r.step(x[a : a + chunk]))
        if a == 0:
            assert r.last_nfe == 6
    assert r.last_nfe == 1 and r.stats.bank_warms == 1 and r.stats.nfe_changes == 1
    assert set(r.stats.frames_by_nfe) == {1, 6}
    outs.append(r.flush())
    y = np.concatenate([o for o in outs if o is not None], axis=-1)
    at = switch - OVERLAP  # first output sample with a frame rendered at NFE 1
    steps = max_steps(y)
    near = steps[at - 2 * HOP : at + 4 * HOP].max()
    typical = np.concatenate([steps[2000 : at - 1000], steps[at + 1000 :]]).max()
    assert near <= 3 * typical, (near, typical)
    # finite receptive field: once the history of the switch is gone, NFE-1 output is exact
    ref = NeuralBinauralRenderer(model, nfe=1).process(x)
    exact = (switch // HOP + model.receptive_field) * HOP
    assert np.abs(y[:, exact:] - ref[:, exact:]).max() < 1e-4
    assert np.abs(y[:, at : at + 4 * HOP] - ref[:, at : at + 4 * HOP]).max() > 1e-4


def test_nfe_policy() -> None:
    p = NfePolicy(levels=(1, 6, 2, 4), high=0.8, low=0.4, patience=2)
    assert p.levels == (6, 4, 2, 1)
    assert p.update(6, 0.9, 1.0) == 4
    assert p.update(4, 2.0, 1.0) == 2
    assert p.update(1, 5.0, 1.0) == 1
    assert p.update(2, 0.1, 1.0) == 2 and p.update(2, 0.1, 1.0) == 4
    with pytest.raises(ConfigError):
        NfePolicy(levels=(0,))


def test_policy_lowers_nfe_when_behind(model) -> None:
    r = NeuralBinauralRenderer(model, nfe=6, policy=NfePolicy(high=1e-9, low=0.0 + 1e-12))
    x = speech_like(0.1)
    for a in range(0, x.shape[0], 1024):
        r.step(x[a : a + 1024])
    assert r.nfe == 1 and r.stats.nfe_changes == 3
    with pytest.raises(ConfigError):
        r.set_nfe(0)


def smooth_model():
    """Zero velocity and almost no prior noise: renders ~ the mono input, smooth like a trained
    model's output (a random network's output is noise, which would hide clicks)."""
    m = random_model(BinauralFlowConfig.preset("tiny").replace(sigma=1e-3), seed=2)
    with torch.no_grad():
        m.out_conv.conv.weight.zero_()
        m.out_conv.conv.bias.zero_()
    return m


def test_dsp_fallback_crossfades_without_click() -> None:
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
