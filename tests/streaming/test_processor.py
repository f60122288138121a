"""The streaming contract and its harness: the harness must pass good processors and catch
bad ones (non-causal, under-declared latency, chunk-dependent output)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesense.streaming.processor import Chain, StreamProcessor, concat_chunks
from livesense.streaming.testing import (
    assert_causal,
    assert_offline_equals_chunked,
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


@pytest.fixture
def signal() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((1, 2000)).astype(np.float32)


def test_chain_latencies_add_and_flush_drains(signal):
    chain = Chain([Delay(10), MovingAverage(), Delay(5)])
    assert chain.latency == 15
    out = chain.process(signal)
    ref = MovingAverage().process(signal)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert_offline_equals_chunked(lambda: Chain([Delay(10), MovingAverage(), Delay(5)]), signal)
    assert_causal(lambda: Chain([Delay(10), MovingAverage(), Delay(5)]), signal, cut=700)


def test_chain_requires_processors():
    with pytest.raises(ValueError, match="at least one"):
        Chain([])


def test_concat_chunks_types():
    assert concat_chunks([None, np.zeros((1, 0))]) is None
    t = concat_chunks([torch.ones(1, 2), None, torch.zeros(1, 3)])
    assert isinstance(t, torch.Tensor) and t.shape == (1, 5)
    n = concat_chunks([np.ones((2, 1)), np.ones((2, 4))])
    assert n.shape == (2, 5)
