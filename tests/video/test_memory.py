"""Segment memory eviction on a cache ledger (no model needed)."""

from __future__ import annotations

import numpy as np

from livesense.models.vlm.cache import IncrementalCache, Kind
from livesense.video.memory import MemoryConfig, SegmentMemory, SegmentNote


def _add(cache: IncrementalCache, kind: Kind, n: int, seg: int) -> None:
    pos = cache.next_pos + np.arange(n)
    cache.record(np.full(n, kind), seg, pos, cache.next_pos + n)


def _stream(mem: SegmentMemory, cache: IncrementalCache, segments: int, frames: int = 20):
    for k in range(segments):
        _add(cache, Kind.VIDEO, frames, k)
        _add(cache, Kind.NOTE, 5, k)
        mem.add_note(SegmentNote(k, k, k + 1, "n", (0, 5), 5))
        mem.evict(cache, k + 1)


def test_window_keeps_recent_video_and_all_notes():
    cache, mem = (
        IncrementalCache(),
        SegmentMemory(MemoryConfig(keep_segments=2, max_cache_tokens=10_000)),
    )
    _add(cache, Kind.SYSTEM, 10, -1)
    _stream(mem, cache, 8)
    video_segs = set(cache.segments[cache.kinds == Kind.VIDEO].tolist())
    assert video_segs == {7}  # segment 8 is next: 2 segments incl. the one being watched
    assert cache.count(Kind.NOTE) == 8 * 5 and cache.count(Kind.SYSTEM) == 10
    assert np.all(np.diff(cache.positions) > 0)  # order and positions kept
    assert cache.next_pos == 10 + 8 * 25


def test_budget_evicts_video_then_oldest_notes():
    cache, mem = (
        IncrementalCache(),
        SegmentMemory(MemoryConfig(keep_segments=4, max_cache_tokens=100)),
    )
    _add(cache, Kind.SYSTEM, 10, -1)
    _stream(mem, cache, 30)
    assert len(cache) <= 100
    assert cache.count(Kind.SYSTEM) == 10
    assert mem.evicted_notes > 0 and not mem.notes[0].in_cache and mem.notes[-1].in_cache
    assert len(mem.notes) == 30  # note text is kept even when its tokens are evicted


def test_incoming_makes_room():
    cache, mem = (
        IncrementalCache(),
        SegmentMemory(MemoryConfig(keep_segments=4, max_cache_tokens=60)),
    )
    _add(cache, Kind.SYSTEM, 10, -1)
    _add(cache, Kind.VIDEO, 40, 0)
    mem.evict(cache, 0, incoming=30)
    assert len(cache) + 30 <= 60 and cache.count(Kind.SYSTEM) == 10
