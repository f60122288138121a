"""The streaming contract shared by every stateful block.

A :class:`StreamProcessor` consumes the newest input with :meth:`step` and returns whatever
output is ready (or ``None``), :meth:`flush` returns what is still held at end of stream, and
:meth:`reset` returns it to a fresh state. Offline processing is the same code path on a fresh
state: ``offline(x) == concat(step(x), flush())``.

Timing is part of the API:

- ``latency``: algorithmic latency in input samples, counted at the end of an emission block:
  output sample ``k`` (aligned with input sample ``k``) that ends a block is emitted once input
  ``k + latency`` is in.
- ``granularity``: output is emitted in blocks of this many samples (1 = sample by sample). The
  first sample of a block waits ``granularity - 1`` samples more, so the worst-case wait, and the
  largest look-ahead any output sample may have, is ``latency + granularity - 1`` samples.

Time is the last axis of every chunk. Processors may work on numpy arrays or torch tensors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from livesense.streaming.frames import PoseUpdate

__all__ = ["Chain", "Chunk", "PoseTarget", "StreamProcessor", "concat_chunks", "to_numpy"]

Chunk = Any  # np.ndarray | torch.Tensor, time on the last axis


class StreamProcessor(ABC):
    """Base class of all stateful stream blocks (see module docstring)."""

    latency: int = 0
    granularity: int = 1

    @abstractmethod
    def step(self, chunk: Chunk) -> Chunk | None:
        """Consume ``chunk`` (any length >= 0 on the last axis); return the output now ready."""

    def flush(self) -> Chunk | None:
        """End of stream: return the output still held back (default: nothing)."""
        return None

    @abstractmethod
    def reset(self) -> None:
        """Forget all state; the next ``step`` starts a new stream."""

    def process(self, signal: Chunk) -> Chunk | None:
        """Offline processing: one step over the whole signal on a fresh state, then flush."""
        self.reset()
        return concat_chunks([self.step(signal), self.flush()])


@runtime_checkable
class PoseTarget(Protocol):
    """A processor that takes :class:`PoseUpdate` control frames (the binaural renderers)."""

    def apply_pose(self, update: PoseUpdate) -> None:
        """Apply the update's speaker and/or listener pose from its ``pts`` on."""


def to_numpy(x: Chunk, dtype: Any = None) -> np.ndarray:
    """A chunk (numpy or torch, any device) as a numpy array (``dtype`` when given)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)


def concat_chunks(chunks: Iterable[Chunk | None], axis: int = -1) -> Chunk | None:
    """Concatenate the non-empty outputs of a stream along ``axis`` (None if there are none)."""
    parts = [c for c in chunks if c is not None and c.shape[axis] > 0]
    if not parts:
        return None
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts, dim=axis)
    return np.concatenate(parts, axis=axis)


class Chain(StreamProcessor):
    """Processors run one after another; latencies add up."""

    def __init__(self, processors: Sequence[StreamProcessor]):
        if not processors:
            raise ValueError("Chain needs at least one processor")
        self.processors = list(processors)
        self.latency = sum(p.latency for p in self.processors)
        self.granularity = self.processors[-1].granularity

    def step(self, chunk: Chunk) -> Chunk | None:
        out: Chunk | None = chunk
        for p in self.processors:
            if out is None:
                return None
            out = p.step(out)
        return out

    def flush(self) -> Chunk | None:
        out: Chunk | None = None
        for i, p in enumerate(self.processors):
            # Everything downstream of p first receives what p still holds.
            held = p.flush()
            pieces = [out, held] if out is not None else [held]
            out = concat_chunks(pieces)
            if i + 1 < len(self.processors) and out is not None:
                out = self.processors[i + 1].step(out)
        return out

    def reset(self) -> None:
        for p in self.processors:
            p.reset()
