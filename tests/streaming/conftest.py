"""Toy processors and a test signal shared by the streaming tests."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from livesense.streaming.processor import StreamProcessor


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


@pytest.fixture(scope="session")
def toy() -> SimpleNamespace:
    """Processors to test the contract and the harness with: ``Delay(d)`` (latency d),
    ``MovingAverage()`` (a causal 3-tap FIR), and two that break the contract: ``Lookahead``
    (non-causal) and ``ChunkDependent`` (forgets state between chunks)."""
    return SimpleNamespace(
        Delay=Delay,
        MovingAverage=MovingAverage,
        Lookahead=Lookahead,
        ChunkDependent=ChunkDependent,
    )
