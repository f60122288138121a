"""Segment memory: per-segment notes kept in the cache, frame KV for recent segments only.

Every closed segment gets a short note (text + its token span + time range) written into the
cache as ``note`` tokens. Frame (``video``) tokens are kept for the most recent
``keep_segments`` segments and evicted beyond that, and whenever the cache would exceed
``max_cache_tokens``. Eviction is selective removal of cache entries
(:meth:`IncrementalCache.keep`): the system prompt and the notes stay, and positions keep
increasing (kept keys retain their rotary positions; new tokens continue from ``next_pos``),
so nothing is recomputed. Order of eviction: video of segments outside the window, then the
oldest video (older segments first, then the oldest frames of the current segment), and only
if notes alone exceed the budget, the oldest notes (their text stays in :attr:`notes`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from livesense.models.vlm.cache import IncrementalCache, Kind

__all__ = ["MemoryConfig", "SegmentMemory", "SegmentNote"]


@dataclass(frozen=True)
class MemoryConfig:
    keep_segments: int = 4  # segments whose frame KV is kept, incl. the one being watched
    max_cache_tokens: int = 8192  # hard budget on cached tokens (system + notes + frames + query)

    def __post_init__(self) -> None:
        if self.keep_segments < 1:
            raise ValueError(f"keep_segments must be >= 1, got {self.keep_segments}")
        if self.max_cache_tokens < 16:
            raise ValueError(f"max_cache_tokens too small: {self.max_cache_tokens}")


@dataclass
class SegmentNote:
    """The note of segment ``index`` about video ``t0``..``t1``; ``span`` = rotary positions."""

    index: int
    t0: float
    t1: float
    text: str
    span: tuple[int, int]  # [first, last + 1) text-axis positions of the note tokens
    n_tokens: int
    in_cache: bool = True


class SegmentMemory:
    """Notes of all segments and the eviction policy for one cache."""

    def __init__(self, config: MemoryConfig) -> None:
        self.config = config
        self.notes: list[SegmentNote] = []
        self.evicted_tokens = 0
        self.evicted_notes = 0

    def add_note(self, note: SegmentNote) -> None:
        self.notes.append(note)

    def evict(self, cache: IncrementalCache, current_segment: int, incoming: int = 0) -> int:
        """Evict so that ``len(cache) + incoming <= max_cache_tokens``; returns tokens evicted."""
        kinds, segs = cache.kinds, cache.segments
        video = kinds == Kind.VIDEO
        keep = ~(video & (segs <= current_segment - self.config.keep_segments))
        excess = int(keep.sum()) + incoming - self.config.max_cache_tokens
        if excess > 0:  # oldest video first, whole segments before the current one
            for k in np.unique(segs[video & keep]):
                if excess <= 0:
                    break
                if k >= current_segment:
                    idx = np.flatnonzero(video & keep & (segs == k))[:excess]
                else:
                    idx = np.flatnonzero(video & keep & (segs == k))
                keep[idx] = False
                excess -= len(idx)
        if excess > 0:  # notes alone are over budget: drop the oldest whole notes
            note = kinds == Kind.NOTE
            for k in np.unique(segs[note & keep]):
                if excess <= 0:
                    break
                idx = np.flatnonzero(note & keep & (segs == k))
                keep[idx] = False
                excess -= len(idx)
                for n in self.notes:
                    if n.index == k:
                        n.in_cache = False
                self.evicted_notes += 1
        evicted = cache.keep(keep)
        self.evicted_tokens += evicted
        return evicted

    def notes_in_cache(self) -> list[SegmentNote]:
        return [n for n in self.notes if n.in_cache]
