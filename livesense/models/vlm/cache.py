"""Incremental KV cache with a per-token ledger, explicit positions and custom masks.

One :class:`IncrementalCache` holds a transformers ``DynamicCache`` plus, for every cached
token, its *kind* (system / video / note / query), the segment it belongs to and its rotary
position. This is what makes streaming ingestion exact and memory bounded:

- **Positions** come from a running counter ``next_pos`` that only ever increases. Chunks are
  appended with explicit position ids, so chunked ingestion reproduces a full-sequence forward
  (keys are stored already rotated, so a cached token's position never changes).
- **Masks** are explicit 4-D additive masks ``(1, 1, q, kv)``: causal within the chunk, full
  over the cache, optionally hiding ``note`` tokens from ``video`` queries (the segment-level
  mask of Think While Watching). SDPA's own ``is_causal`` would align top-left and be wrong.
- **Eviction** is selective removal: :meth:`IncrementalCache.keep` index-selects the kept
  entries of every layer. Survivors keep their positions, so the gap is invisible to RoPE's
  relative attention and new tokens continue at ``next_pos``.
- **Crop / rewind** remove the newest tokens (a question and its answer, a yes/no probe);
  ``rewind`` also restores ``next_pos`` so the next tokens reuse those positions.
"""

from __future__ import annotations

import enum

import numpy as np
import torch

__all__ = ["IncrementalCache", "Kind", "additive_mask"]


class Kind(enum.IntEnum):
    """What a cached token is; decides eviction and (optionally) visibility."""

    SYSTEM = 0
    VIDEO = 1
    NOTE = 2
    QUERY = 3  # questions, answers and probes: cropped after use


def additive_mask(
    cached_kinds: np.ndarray,
    new_kinds: np.ndarray,
    dtype: torch.dtype,
    device: torch.device | str = "cpu",
    hide_notes_from_video: bool = False,
) -> torch.Tensor:
    """The (1, 1, q, kv + q) additive mask for appending ``new_kinds`` after ``cached_kinds``.

    0 where attention is allowed, ``finfo(dtype).min`` where not. Every new token sees the whole
    cache and the new tokens up to itself; with ``hide_notes_from_video`` video tokens skip
    note tokens (in the cache and in the chunk).
    """
    n, q = len(cached_kinds), len(new_kinds)
    kinds = np.concatenate([cached_kinds, new_kinds])  # (kv,)
    allowed = np.ones((q, n + q), dtype=bool)
    allowed[:, n:] = np.tril(np.ones((q, q), dtype=bool))
    if hide_notes_from_video:
        allowed &= ~((new_kinds == Kind.VIDEO)[:, None] & (kinds == Kind.NOTE)[None, :])
        allowed[np.arange(q), n + np.arange(q)] = True  # a token always sees itself
    mask = torch.zeros((1, 1, q, n + q), dtype=dtype, device=device)
    mask.masked_fill_(torch.from_numpy(~allowed).to(device)[None, None], torch.finfo(dtype).min)
    return mask


class IncrementalCache:
    """A DynamicCache plus per-token kind, segment and position (see the module docstring)."""

    def __init__(self, config: object | None = None) -> None:
        from transformers import DynamicCache  # lazy: transformers takes ~1.5 s to import

        self.kv = DynamicCache(config=config) if config is not None else DynamicCache()
        self.kinds = np.zeros(0, dtype=np.int8)  # (n,) Kind per cached token
        self.segments = np.zeros(0, dtype=np.int64)  # (n,) segment index, -1 if none
        self.positions = np.zeros(0, dtype=np.int64)  # (n,) text-axis rotary position
        self.next_pos = 0  # rotary position of the next token; never decreases

    def __len__(self) -> int:
        return len(self.kinds)

    def record(self, kinds: np.ndarray, segment: int, positions: np.ndarray, next_pos: int) -> None:
        """Book-keep a chunk the model just appended: ``kinds`` and text-axis ``positions``
        (q,); ``next_pos`` is the position after the chunk."""
        q = len(kinds)
        self.kinds = np.concatenate([self.kinds, kinds.astype(np.int8)])
        self.segments = np.concatenate([self.segments, np.full(q, segment, np.int64)])
        self.positions = np.concatenate([self.positions, positions.astype(np.int64)])
        self.next_pos = max(self.next_pos, next_pos)
        assert self.kv.get_seq_length() in (0, len(self.kinds)), "cache and ledger disagree"

    def crop(self, length: int) -> None:
        """Keep the oldest ``length`` tokens. Positions are NOT reused: ``next_pos`` stays."""
        drop = len(self) - length
        if drop <= 0:
            return
        self.kv.crop(-drop)
        self.kinds = self.kinds[:length]
        self.segments = self.segments[:length]
        self.positions = self.positions[:length]

    def mark(self) -> tuple[int, int]:
        """A point to :meth:`rewind` to: (length, next_pos)."""
        return len(self), self.next_pos

    def rewind(self, mark: tuple[int, int]) -> None:
        """Drop everything appended since ``mark`` and reuse its positions (the tokens that
        held them are gone), so e.g. every scored option sees the same positions."""
        self.crop(mark[0])
        self.next_pos = mark[1]

    def keep(self, keep: np.ndarray) -> int:
        """Selective eviction: keep the entries where ``keep`` (n,) bool is True.

        Returns the number of evicted tokens. Kept keys are already rotated, so they keep
        their positions; ``next_pos`` is unchanged.
        """
        if keep.all():
            return 0
        idx = torch.from_numpy(np.flatnonzero(keep))
        for layer in self.kv.layers:
            if getattr(layer, "keys", None) is None or layer.keys.numel() == 0:
                continue
            i = idx.to(layer.keys.device)
            layer.keys = layer.keys.index_select(-2, i)  # (B, H, n_kept, D)
            layer.values = layer.values.index_select(-2, i)
        evicted = int((~keep).sum())
        self.kinds = self.kinds[keep]
        self.segments = self.segments[keep]
        self.positions = self.positions[keep]
        return evicted

    def count(self, kind: Kind) -> int:
        return int((self.kinds == kind).sum())

    def nbytes(self) -> int:
        """Bytes held by keys and values."""
        total = 0
        for layer in self.kv.layers:
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None)):
                if t is not None:
                    total += t.numel() * t.element_size()
        return total
