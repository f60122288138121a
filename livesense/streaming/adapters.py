"""Adapters that change how a processor is called without changing what it computes.

:class:`Rechunk` hands its inner processor blocks of exactly ``block`` samples, however the
input arrives (a live caller's 10 ms packets, a replay's chunks): per-call overhead of a neural
renderer dominates small blocks on a CPU. The composite timing is computed: the inner latency,
and a granularity of one block (a sample waits at most ``latency + block - 1`` samples).
"""

from __future__ import annotations

import numpy as np

from livesense.streaming.frames import PoseUpdate
from livesense.streaming.processor import Chunk, PoseTarget, StreamProcessor, to_numpy

__all__ = ["Rechunk"]


class Rechunk(StreamProcessor):
    """Feeds ``inner`` full blocks of ``block`` samples (numpy, ``(channels, block)``), holding
    input until a block is complete; ``flush`` passes the rest and flushes ``inner``. Pose
    updates pass through (they are applied before the block they fall in is rendered)."""

    def __init__(self, inner: StreamProcessor, block: int):
        if not isinstance(block, int) or block <= 0:
            raise ValueError(f"block must be a positive int, got {block!r}")
        self.inner = inner
        self.block = block
        self.latency = inner.latency
        self.granularity = block
        self._buf: np.ndarray | None = None  # (channels, block) pending input, allocated once
        self._n = 0

    def step(self, chunk: Chunk) -> np.ndarray | None:
        x = to_numpy(chunk, np.float32)
        x = x.reshape(1, -1) if x.ndim == 1 else x
        if self._buf is None or self._buf.shape[0] != x.shape[0]:
            self._buf = np.zeros((x.shape[0], self.block), np.float32)
        outs = []
        pos = 0
        while pos < x.shape[1]:
            k = min(self.block - self._n, x.shape[1] - pos)
            self._buf[:, self._n : self._n + k] = x[:, pos : pos + k]
            self._n += k
            pos += k
            if self._n == self.block:
                y = self.inner.step(self._buf.copy())
                self._n = 0
                if y is not None:
                    outs.append(to_numpy(y, np.float32))
        return np.concatenate(outs, axis=-1) if outs else None

    def flush(self) -> np.ndarray | None:
        parts = []
        if self._n and self._buf is not None:
            y = self.inner.step(self._buf[:, : self._n].copy())
            if y is not None:
                parts.append(to_numpy(y, np.float32))
            self._n = 0
        tail = self.inner.flush()
        if tail is not None:
            parts.append(to_numpy(tail, np.float32))
        return np.concatenate(parts, axis=-1) if parts else None

    def reset(self) -> None:
        self.inner.reset()
        self._n = 0

    def apply_pose(self, update: PoseUpdate) -> None:
        if not isinstance(self.inner, PoseTarget):
            raise TypeError(f"{type(self.inner).__name__} takes no pose updates")
        self.inner.apply_pose(update)
