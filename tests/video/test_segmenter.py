"""Segmenter: pts -> segments of S seconds."""

from __future__ import annotations

import pytest

from livesense.video.segmenter import Segmenter


def test_segments_close_on_boundary():
    s = Segmenter(10.0)
    closed = [c for t in range(25) if (c := s.push(float(t))) is not None]
    assert [(c.index, c.t0, c.t1, c.n_frames) for c in closed] == [
        (0, 0.0, 10.0, 10),
        (1, 10.0, 20.0, 10),
    ]
    last = s.flush()
    assert last is not None and last.index == 2 and last.n_frames == 5 and last.last_pts == 24.0
    assert s.flush() is None


def test_gap_skips_segments():
    s = Segmenter(2.0)
    s.push(0.5)
    c = s.push(9.0)
    assert c is not None and c.index == 0 and s.current.index == 4
    with pytest.raises(ValueError):
        Segmenter(0)
