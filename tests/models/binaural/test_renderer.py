"""The streaming neural renderer: offline == chunked, causality, poses, batching with per-slot
reset, NFE degradation and the DSP fallback."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesense.audio.geometry import Pose
from livesense.audio.trajectory import OrbitTrajectory
from livesense.models.binaural.renderer import NeuralBinauralRenderer
from livesense.streaming.testing import assert_causal, assert_offline_equals_chunked

HOP = 128
OVERLAP = 384


@pytest.mark.parametrize(("solver", "nfe"), [("euler", 2), ("midpoint", 2)])
def test_offline_equals_chunked(speech_like, model, solver: str, nfe: int) -> None:
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


def test_causal(speech_like, model) -> None:
    x = speech_like(0.2)
    assert_causal(lambda: NeuralBinauralRenderer(model, nfe=2), x, cut=5000)
    assert_causal(lambda: NeuralBinauralRenderer(model, nfe=2), x, cut=5120)


def test_torch_io_and_empty_chunks(speech_like, model) -> None:
    x = speech_like(0.1)
    r = NeuralBinauralRenderer(model)
    ref = r.process(x[:3000])
    assert r.step(torch.from_numpy(x[:0])) is None
    got = [r.step(torch.from_numpy(x[None, :3000])), r.flush()]
    assert all(isinstance(g, torch.Tensor) for g in got)
    assert np.allclose(torch.cat(got, dim=-1).numpy(), ref, atol=1e-4)
    with pytest.raises(ValueError, match="mono"):
        r.step(np.zeros((2, 10), dtype=np.float32))


def test_pose_updates_apply_from_their_frame(speech_like, model) -> None:
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
