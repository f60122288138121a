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


class Delay(StreamProcessor):
    """Emits input sample k once input k + d has arrived (latency d); flush emits the rest."""

    def __init__(self, d: int):
        self.latency = d
        self.reset()

    def reset(self) -> None:
        self.buf = np.zeros((1, 0), np.float32)

    def step(self, chunk):
        self.buf = np.concatenate([self.buf, chunk], axis=-1)
        n = max(0, self.buf.shape[-1] - self.latency)
        out, self.buf = self.buf[..., :n], self.buf[..., n:]
        return out

    def flush(self):
        out, self.buf = self.buf, self.buf[..., :0]
        return out


class MovingAverage(StreamProcessor):
    """Causal 3-tap FIR, state kept between chunks."""

    def reset(self) -> None:
        self.hist = np.zeros((1, 2), np.float32)

    def __init__(self):
        self.reset()

    def step(self, chunk):
        x = np.concatenate([self.hist, chunk], axis=-1)
        y = (x[..., 2:] + x[..., 1:-1] + x[..., :-2]) / 3
        self.hist = x[..., -2:]
        return y


class Lookahead(MovingAverage):
    """Non-causal: mixes in the next sample of the same chunk while declaring latency 0."""

    def step(self, chunk):
        y = chunk.copy()
        y[..., :-1] += chunk[..., 1:]
        return y


class ChunkDependent(MovingAverage):
    """Forgets state between chunks: offline != chunked."""

    def step(self, chunk):
        out = super().step(chunk)
        self.hist[:] = 0
        return out


@pytest.fixture
def signal() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 2000)).astype(np.float32)


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


def test_good_processors_pass(signal):
    assert_offline_equals_chunked(MovingAverage, signal, atol=1e-6)
    assert_causal(MovingAverage, signal, cut=1000)
    assert_offline_equals_chunked(lambda: Delay(64), signal, atol=0)
    assert_causal(lambda: Delay(64), signal, cut=1000)


def test_harness_catches_chunk_dependence(signal):
    with pytest.raises(AssertionError, match="max abs diff"):
        assert_offline_equals_chunked(ChunkDependent, signal, atol=1e-6)


def test_harness_catches_lookahead(signal):
    with pytest.raises(AssertionError, match="depends on future input"):
        assert_causal(Lookahead, signal, cut=1000)


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
