"""FrameRing: latest-N semantics, drop/late/skip accounting, blocking get."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.buffers import FrameRing


def test_full_ring_drops_oldest_and_counts():
    ring: FrameRing[str] = FrameRing(3)
    for i in range(5):
        assert ring.push(f"f{i}", i / 10)
    assert len(ring) == 3 and ring.dropped == 2
    assert ring.drain() == [("f2", 0.2), ("f3", 0.3), ("f4", 0.4)]
    assert len(ring) == 0 and ring.pop() is None and ring.popped == 3


def test_late_frames_are_counted_and_discarded():
    ring: FrameRing[int] = FrameRing(4)
    assert ring.push(0, 1.0)
    assert ring.push(1, 1.0)  # equal pts is fine
    assert ring.pop() == (0, 1.0)
    assert not ring.push(2, 0.5)  # older than the newest accepted, even after pops
    assert ring.late == 1 and len(ring) == 1 and ring.last_pts == 1.0
    with pytest.raises(ValueError, match="finite"):
        ring.push(3, float("nan"))


def test_pop_latest_and_peek():
    ring: FrameRing[int] = FrameRing(5)
    assert ring.peek_latest() is None and ring.pop_latest() is None
    for i in range(4):
        ring.push(i, float(i))
    assert ring.peek_latest() == (3, 3.0) and len(ring) == 4
    assert ring.pop_latest(drop_older=False) == (3, 3.0)
    assert len(ring) == 3 and ring.skipped == 0
    assert ring.pop_latest() == (2, 2.0)
    assert len(ring) == 0 and ring.skipped == 2
    s = ring.stats()
    assert s.pushed == s.popped + s.dropped + s.skipped + s.size


def test_popped_slots_release_their_frames():
    class Frame:
        pass

    ring: FrameRing[Frame] = FrameRing(2)
    f = Frame()
    ref = weakref.ref(f)
    ring.push(f, 0.0)
    del f
    ring.pop()
    gc.collect()
    assert ref() is None


def test_get_blocks_until_push_times_out_and_wakes_on_close():
    ring: FrameRing[str] = FrameRing(2)
    assert ring.get(timeout=0.01) is None
    threading.Timer(0.02, lambda: ring.push("x", 0.0)).start()
    assert ring.get(timeout=5.0) == ("x", 0.0)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(ring.get()))
    t.start()
    time.sleep(0.02)
    ring.close()
    t.join(timeout=5.0)
    assert got == [None]


def test_clear_forgets_items_counters_and_last_pts():
    ring: FrameRing[int] = FrameRing(2)
    for i in range(3):
        ring.push(i, 5.0 + i)
    ring.clear()
    assert len(ring) == 0 and ring.dropped == 0
    assert ring.push(9, 0.0)  # new stream may start at an earlier pts


op_st = st.one_of(
    st.tuples(st.just("push"), st.floats(-1.0, 2.0)),  # pts step; negative -> late
    st.tuples(st.just("pop")),
    st.tuples(st.just("pop_latest"), st.booleans()),
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(1, 6), ops=st.lists(op_st, max_size=60))
def test_ring_holds_the_latest_frames_in_order(capacity, ops):
    ring: FrameRing[int] = FrameRing(capacity)
    model: deque[tuple[int, float]] = deque()
    last, pushed, late, dropped, skipped = float("-inf"), 0, 0, 0, 0
    pts = 0.0
    for i, op in enumerate(ops):
        if op[0] == "push":
            pts += op[1]
            accepted = ring.push(i, pts)
            assert accepted == (pts >= last)
            if accepted:
                last, pushed = pts, pushed + 1
                if len(model) == capacity:
                    model.popleft()
                    dropped += 1
                model.append((i, pts))
            else:
                late += 1
        elif op[0] == "pop":
            assert ring.pop() == (model.popleft() if model else None)
        else:
            expect = model.pop() if model else None
            assert ring.pop_latest(drop_older=op[1]) == expect
            if expect is not None and op[1]:
                skipped += len(model)
                model.clear()
        assert len(ring) == len(model)
        assert ring.peek_latest() == (model[-1] if model else None)
        s = ring.stats()
        assert (s.pushed, s.late, s.dropped, s.skipped) == (pushed, late, dropped, skipped)
        assert s.pushed == s.popped + s.dropped + s.skipped + s.size
    assert ring.drain() == list(model)
