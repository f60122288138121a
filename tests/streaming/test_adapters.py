"""Rechunk: the inner processor sees full blocks only; the output is what it computes, with
the composite timing computed (inner latency, one block of granularity)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.audio.trajectory import OrbitTrajectory
from livesense.streaming.adapters import Rechunk
from livesense.streaming.frames import PoseUpdate
from livesense.streaming.processor import StreamProcessor, concat_chunks
from livesense.streaming.testing import assert_causal, assert_offline_equals_chunked, run_chunked


class BlockSizes(StreamProcessor):
    """Identity that records the sizes it was called with."""

    def __init__(self) -> None:
        self.sizes: list[int] = []

    def step(self, chunk):
        self.sizes.append(chunk.shape[-1])
        return chunk

    def reset(self) -> None:
        self.sizes = []


def _x(n: int = 4000, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal((1, n))).astype(np.float32)


def test_inner_sees_full_blocks_and_the_rest_at_flush() -> None:
    inner = BlockSizes()
    r = Rechunk(inner, 256)
    assert r.latency == 0 and r.granularity == 256
    y, _ = run_chunked(r, _x(1000), [0, 7, 300, 301, 1000])
    assert inner.sizes == [256, 256, 256, 232]  # the last, shorter block comes with flush
    assert np.array_equal(y, _x(1000))


def test_offline_equals_chunked_and_causal_with_a_renderer() -> None:
    def make() -> Rechunk:
        return Rechunk(DspBinauralRenderer(OrbitTrajectory(1.2, 0.5), Pose()), 384)

    x = _x(6000, 1)
    assert_offline_equals_chunked(make, x, atol=1e-6)
    assert_causal(make, x, cut=3000)  # the declared granularity bounds the look-ahead


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 900), min_size=1, max_size=12), st.integers(1, 700))
def test_any_split_and_block_size_gives_the_offline_output(sizes: list[int], block: int) -> None:
    x = _x(sum(sizes) + 1, 2)
    bounds = np.cumsum([0, *sizes, 1]).tolist()
    y, _ = run_chunked(Rechunk(DspBinauralRenderer(Pose((0, 1, 0))), block), x, bounds)
    ref = DspBinauralRenderer(Pose((0, 1, 0))).process(x)
    assert y.shape == ref.shape and np.abs(y - ref).max() < 1e-6


def test_pose_updates_pass_through_and_need_a_target() -> None:
    x = _x(4096, 3)
    left = Pose((0.0, -1.0, 0.0))
    r = Rechunk(DspBinauralRenderer(Pose((0.0, 1.0, 0.0))), 512)
    r.apply_pose(PoseUpdate(2048, speaker=left.values))  # before the block it falls in
    y = concat_chunks([r.step(x[:, :1000]), r.step(x[:, 1000:]), r.flush()])
    ref = DspBinauralRenderer(Pose((0.0, 1.0, 0.0)))
    ref.set_speaker_pose(left, 2048)
    assert np.abs(y - ref.step(x)).max() < 1e-6
    assert np.abs(y - DspBinauralRenderer(Pose((0.0, 1.0, 0.0))).process(x)).max() > 0.01
    with pytest.raises(TypeError, match="takes no pose updates"):
        Rechunk(BlockSizes(), 4).apply_pose(PoseUpdate(0, speaker=left.values))
    with pytest.raises(ValueError, match="block"):
        Rechunk(BlockSizes(), 0)
