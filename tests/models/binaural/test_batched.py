"""Batched rendering: slots equal single streams, per-slot reset isolates sessions."""

from __future__ import annotations

import numpy as np
import pytest

from livesense.audio.geometry import Pose
from livesense.models.binaural.batched import BatchedNeuralRenderer
from livesense.models.binaural.renderer import NeuralBinauralRenderer

SR = 48000


HOP = 128


OVERLAP = 384


def test_batched_equals_single_stream_per_slot(speech_like, model) -> None:
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


def test_reset_slot_isolates_sessions(speech_like, model) -> None:
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


def test_reset_slot_off_the_frame_grid(speech_like, model) -> None:
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
