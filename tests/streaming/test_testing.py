"""The shared offline == chunked and causality harness, and that it can fail."""

from __future__ import annotations

import numpy as np
import pytest

from livesense.streaming.processor import StreamProcessor
from livesense.streaming.testing import (
    assert_causal,
    assert_offline_equals_chunked,
    random_splits,
    split_points,
)


class CentredAverage(StreamProcessor):
    """5-tap centred average: truly needs 2 samples of look-ahead."""

    def __init__(self, declared: int):
        self.latency = declared
        self.reset()

    def reset(self) -> None:
        self.buf = np.zeros((1, 2), np.float32)  # two zeros of left context

    def step(self, chunk):
        self.buf = np.concatenate([self.buf, chunk], axis=-1)
        n = self.buf.shape[-1] - 4
        if n <= 0:
            return None
        x = self.buf
        y = sum(x[..., i : i + n] for i in range(5)) / 5
        self.buf = x[..., n:]
        return y

    def flush(self):
        x = np.concatenate([self.buf, np.zeros((1, 2), np.float32)], axis=-1)
        n = x.shape[-1] - 4
        y = sum(x[..., i : i + n] for i in range(5)) / 5
        self.buf = self.buf[..., :2] * 0
        return y


def test_good_processors_pass(signal, toy):
    assert_offline_equals_chunked(toy.MovingAverage, signal, atol=1e-6)
    assert_causal(toy.MovingAverage, signal, cut=1000)
    assert_offline_equals_chunked(lambda: toy.Delay(64), signal, atol=0)
    assert_causal(lambda: toy.Delay(64), signal, cut=1000)


def test_harness_catches_chunk_dependence(signal, toy):
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_offline_equals_chunked(toy.ChunkDependent, signal, atol=1e-6)


def test_harness_catches_lookahead(signal, toy):
    with pytest.raises(AssertionError, match="depends on future input"):
        assert_causal(toy.Lookahead, signal, cut=1000)


def test_harness_checks_declared_latency(signal):
    assert_offline_equals_chunked(lambda: CentredAverage(2), signal, atol=1e-6)
    assert_causal(lambda: CentredAverage(2), signal, cut=1000)
    with pytest.raises(AssertionError, match="declared latency 1 is too small"):
        assert_causal(lambda: CentredAverage(1), signal, cut=1000)


def test_split_helpers():
    assert split_points(10, [3]) == [0, 3, 6, 9, 10]
    b = random_splits(100, np.random.default_rng(1), 7)
    assert b[0] == 0 and b[-1] == 100 and all(x <= y for x, y in zip(b, b[1:], strict=False))
    with pytest.raises(ValueError):
        split_points(10, [0])
