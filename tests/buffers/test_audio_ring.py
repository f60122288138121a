"""AudioRing: order, no invented samples, exact loss accounting, zero-copy views, threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.buffers import (
    AudioRing,
    OverflowPolicy,
    RingClosed,
    RingOverflow,
    RingTimeout,
)

CH_OFFSET = 100_000.0  # channel c carries (index + 1) + c * CH_OFFSET: exact in float32


def ramp(start: int, n: int, channels: int) -> np.ndarray:
    """(channels, n) float32 whose sample at stream index i is i + 1 (+ channel offset)."""
    idx = np.arange(start, start + n, dtype=np.float64) + 1.0
    return (idx[None, :] + CH_OFFSET * np.arange(channels)[:, None]).astype(np.float32)


class Model:
    """Reference accounting for one ring, driven alongside it."""

    def __init__(self, capacity: int):
        self.cap = capacity
        self.wp = self.rp = 0
        self.read_total = self.overrun_samples = self.overruns = 0
        self.underrun_samples = self.underruns = 0

    @property
    def available(self) -> int:
        return self.wp - self.rp

    def check(self, ring: AudioRing) -> None:
        s = ring.stats()
        assert (s.write_pos, s.read_pos, s.written) == (self.wp, self.rp, self.wp)
        assert s.available == self.available
        assert s.read_total == self.read_total
        assert (s.overrun_samples, s.overruns) == (self.overrun_samples, self.overruns)
        assert (s.underrun_samples, s.underruns) == (self.underrun_samples, self.underruns)
        assert s.written == s.read_total + s.available + s.overrun_samples
        assert ring.free == self.cap - self.available


op_st = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 40)),
    st.tuples(st.just("read"), st.integers(0, 40), st.booleans()),
    st.tuples(st.just("view"), st.integers(0, 40), st.floats(0.0, 1.0)),
)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 17),
    channels=st.integers(1, 3),
    policy=st.sampled_from(list(OverflowPolicy)),
    ops=st.lists(op_st, max_size=40),
)
def test_any_interleaving_is_ordered_and_exactly_accounted(capacity, channels, policy, ops):
    ring = AudioRing(capacity, channels, policy=policy, timeout=0.0)
    m = Model(capacity)
    for op in ops:
        if op[0] == "write":
            n = op[1]
            x = ramp(m.wp, n, channels)
            free = capacity - m.available
            if policy is OverflowPolicy.OVERWRITE:
                assert ring.write(x) == n
                new_rp = max(m.rp, m.wp + n - capacity)
                if new_rp > m.rp:
                    m.overrun_samples += new_rp - m.rp
                    m.overruns += 1
                m.rp = new_rp
                m.wp += n
            elif n <= free:
                assert ring.write(x) == n
                m.wp += n
            elif policy is OverflowPolicy.ERROR:
                with pytest.raises(RingOverflow):
                    ring.write(x)
            else:  # BLOCK with a 0 s timeout: writes what fits, then times out
                with pytest.raises(RingTimeout) as exc:
                    ring.write(x)
                assert exc.value.written == free
                m.wp += free
        elif op[0] == "read":
            n, pad = op[1], op[2]
            k = min(n, m.available)
            out = ring.read(n, pad=pad)
            assert out.dtype == np.float32
            assert out.shape == (channels, n if pad else k)
            np.testing.assert_array_equal(out[:, :k], ramp(m.rp, k, channels))
            if pad:
                assert not out[:, k:].any()
                if k < n:
                    m.underrun_samples += n - k
                    m.underruns += 1
            m.rp += k
            m.read_total += k
        else:
            n, frac = op[1], op[2]
            k = min(n, m.available)
            views = ring.read_view(n)
            wraps = k > 0 and (m.rp % capacity) + k > capacity
            assert len(views) == (2 if wraps else 1)
            got = np.concatenate(views, axis=1)
            np.testing.assert_array_equal(got, ramp(m.rp, k, channels))
            a = int(frac * k)
            assert ring.advance(a) == a
            m.rp += a
            m.read_total += a
        m.check(ring)


@pytest.mark.parametrize("channels", [1, 2])
def test_two_threads_block_policy_delivers_everything_in_order(channels):
    total = 30_011
    ring = AudioRing(64, channels, policy=OverflowPolicy.BLOCK, timeout=10.0)
    signal = ramp(0, total, channels)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            sizes, pos, i = [7, 13, 1, 31, 97, 0, 64], 0, 0
            while pos < total:
                n = min(sizes[i % len(sizes)], total - pos)
                assert ring.write(signal[:, pos : pos + n]) == n
                pos, i = pos + n, i + 1
        except BaseException as e:  # surfaced in the main thread
            errors.append(e)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    chunks, got, sizes, i = [], 0, [5, 11, 37, 129, 1], 0
    while got < total:
        n = min(sizes[i % len(sizes)], total - got)
        out = ring.read_blocking(n, timeout=10.0)
        assert out.shape[1] == n, "consumer timed out"
        chunks.append(out)
        got, i = got + n, i + 1
    producer.join(timeout=10.0)
    assert not errors and not producer.is_alive()
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), signal)
    s = ring.stats()
    assert (s.written, s.read_total, s.overrun_samples, s.available) == (total, total, 0, 0)


def test_read_view_is_zero_copy_and_splits_at_the_wrap():
    ring = AudioRing(10, 2, policy=OverflowPolicy.ERROR)
    ring.write(ramp(0, 6, 2))
    (v,) = ring.read_view(4)
    assert np.shares_memory(v, ring._buf) and not v.flags.writeable
    np.testing.assert_array_equal(v, ramp(0, 4, 2))
    assert ring.advance(4) == 4
    ring.write(ramp(6, 7, 2))  # positions 6..12 -> slots 6..9, 0..2
    a, b = ring.read_view(100)
    assert a.shape == (2, 6) and b.shape == (2, 3)  # slots 4..9, then 0..2
    assert np.shares_memory(a, ring._buf) and np.shares_memory(b, ring._buf)
    np.testing.assert_array_equal(np.concatenate([a, b], axis=1), ramp(4, 9, 2))
    assert ring.advance(9) == 9 and ring.available == 0 and ring.read_pos == 13


def test_advance_reports_samples_overwritten_while_viewed():
    ring = AudioRing(8, policy=OverflowPolicy.OVERWRITE)
    ring.write(ramp(0, 8, 1))
    (v,) = ring.read_view(6)
    ring.write(ramp(8, 3, 1))  # drops positions 0..2 while the consumer holds the view
    assert ring.read_pos == 3
    assert ring.advance(6) == 3  # only positions 3..5 were still unread
    s = ring.stats()
    assert (s.read_pos, s.read_total, s.overrun_samples, s.overruns) == (6, 3, 3, 1)
    with pytest.raises(ValueError, match="only"):
        ring.advance(6)  # 5 available


def test_overwrite_larger_than_capacity_keeps_newest():
    ring = AudioRing(5, policy=OverflowPolicy.OVERWRITE)
    ring.write(ramp(0, 3, 1))
    ring.write(ramp(3, 12, 1))
    assert ring.read_pos == 10 and ring.overrun_samples == 10 and ring.overruns == 1
    np.testing.assert_array_equal(ring.read(99), ramp(10, 5, 1))


def test_block_write_larger_than_capacity_goes_in_pieces():
    ring = AudioRing(4, policy=OverflowPolicy.BLOCK, timeout=5.0)
    out: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: out.append(ring.read_blocking(11, timeout=5.0)))
    reader.start()
    assert ring.write(ramp(0, 11, 1)) == 11
    reader.join(timeout=5.0)
    np.testing.assert_array_equal(out[0], ramp(0, 11, 1))


def test_block_timeout_and_error_policy_write_nothing_beyond_space():
    ring = AudioRing(4, policy=OverflowPolicy.BLOCK, timeout=0.01)
    ring.write(ramp(0, 3, 1))
    t0 = time.monotonic()
    with pytest.raises(RingTimeout, match="wrote 1 of 3") as exc:
        ring.write(ramp(3, 3, 1))
    assert exc.value.written == 1 and time.monotonic() - t0 < 1.0
    err = AudioRing(4, policy=OverflowPolicy.ERROR)
    err.write(ramp(0, 3, 1))
    with pytest.raises(RingOverflow, match="nothing written"):
        err.write(ramp(3, 2, 1))
    assert err.written == 3 and err.available == 3


def test_pad_counts_underruns():
    ring = AudioRing(8, 2)
    ring.write(ramp(0, 3, 2))
    out = ring.read(5, pad=True)
    np.testing.assert_array_equal(out[:, :3], ramp(0, 3, 2))
    assert not out[:, 3:].any()
    assert ring.read(4, pad=True).sum() == 0
    assert (ring.underrun_samples, ring.underruns, ring.read_pos) == (6, 2, 3)
    assert ring.read(4).shape == (2, 0)  # no pad: short read, not an underrun
    assert ring.underruns == 2


def test_read_blocking_times_out_with_partial_data_and_close_wakes_waiters():
    ring = AudioRing(8, policy=OverflowPolicy.BLOCK)
    ring.write(ramp(0, 2, 1))
    np.testing.assert_array_equal(ring.read_blocking(5, timeout=0.01), ramp(0, 2, 1))
    ring.write(ramp(2, 8, 1))  # full
    failures: list[BaseException] = []

    def blocked_writer() -> None:
        try:
            ring.write(ramp(10, 1, 1))
        except RingClosed as e:
            failures.append(e)

    t = threading.Thread(target=blocked_writer)
    t.start()
    time.sleep(0.02)
    ring.close()
    t.join(timeout=5.0)
    assert len(failures) == 1
    np.testing.assert_array_equal(ring.read_blocking(100), ramp(2, 8, 1))  # returns, no hang
    with pytest.raises(RingClosed):
        ring.write(ramp(10, 1, 1))


def test_clear_starts_a_new_stream():
    ring = AudioRing(4, policy=OverflowPolicy.OVERWRITE)
    ring.write(ramp(0, 9, 1))
    ring.read(2, pad=True)
    ring.clear()
    s = ring.stats()
    assert s.written == s.read_total == s.available == s.overrun_samples == s.underruns == 0
    assert s.read_pos == s.write_pos == 0


def test_input_validation():
    mono, stereo = AudioRing(8), AudioRing(8, 2)
    assert mono.write(np.arange(3, dtype=np.float64)) == 3  # 1-D mono, float64 cast
    with pytest.raises(ValueError, match="2 channel"):
        stereo.write(np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="2 channel"):
        stereo.write(np.zeros((3, 4), np.float32))
    with pytest.raises(ValueError, match="float"):
        mono.write(np.zeros(4, np.int16))
    with pytest.raises(ValueError, match=">= 0"):
        mono.read(-1)
    with pytest.raises(ValueError, match="out must be"):
        stereo.read_into(np.zeros((1, 4), np.float32))
    for bad in [dict(capacity=0), dict(capacity=4, channels=0), dict(capacity=4, timeout=-1)]:
        with pytest.raises(ValueError):
            AudioRing(**bad)
