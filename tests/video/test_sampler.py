"""Frame sampling to a target fps and resizing."""

from __future__ import annotations

import numpy as np
import pytest

from livesense.models.vlm.preprocess import resize_rgb
from livesense.video.sampler import FrameSampler


@pytest.mark.parametrize("rate, fps, seconds", [(30, 1, 10), (24, 2, 5), (25, 4, 3), (7, 2, 6)])
def test_sampler_rate(rate, fps, seconds):
    s = FrameSampler(fps)
    kept = [i / rate for i in range(rate * seconds) if s.accept(i / rate)]
    assert len(kept) == fps * seconds
    assert s.accepted + s.rejected == rate * seconds
    assert np.all(np.diff(kept) > 0)


def test_sampler_jitter_and_slow_source():
    s = FrameSampler(2.0)
    assert [s.accept(t) for t in (0.0, 0.1, 0.49, 0.51, 3.0, 2.9)] == [
        True,
        False,
        False,
        True,
        True,
        False,
    ]
    assert all(FrameSampler(None).accept(t) for t in (0.0, 0.0, 1.0))
    with pytest.raises(ValueError):
        FrameSampler(0)


def test_resize_rgb():
    img = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = resize_rgb(img, 32, 16)
    assert out.shape == (32, 16, 3) and out.dtype == np.uint8
    assert resize_rgb(img, 48, 64) is img
