"""JitterBuffer: reordering, concealment, late/duplicate/resync handling, adaptive delay."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.buffers import Arrival, JitterBuffer

P = 4  # samples per packet
MOD = 2**32


def pkt(i: int, channels: int = 1, p: int = P) -> np.ndarray:
    """Packet ``i`` of the test stream: (channels, p), every sample nonzero and unique."""
    v = i * p + np.arange(p, dtype=np.float64) + 1.0
    return (v[None, :] + 10_000.0 * np.arange(channels)[:, None]).astype(np.float32)


def ident(out: np.ndarray, p: int = P) -> int | None:
    """Index of the test packet ``out`` is, or None for concealment (asserts no invention)."""
    if not out.any():
        return None
    i = int(round((float(out[0, 0]) - 1.0) / p))
    np.testing.assert_array_equal(out, pkt(i, out.shape[0], p))
    return i


def classify(out: np.ndarray, conceal: str) -> int | None:
    """Like :func:`ident`, but tolerates fade concealment (which is never a test packet)."""
    if out.any():
        i = int(round((float(out[0, 0]) - 1.0) / P))
        if np.array_equal(out, pkt(i, out.shape[0])):
            return i
    assert conceal == "fade" or not out.any(), "invented samples"
    return None


def counts_consistent(jb: JitterBuffer) -> None:
    s = jb.stats()
    assert s.received == s.played + s.late + s.duplicates + s.dropped + s.buffered
    assert jb.min_delay <= s.target_delay <= jb.max_delay


def test_in_order_stream_plays_exactly():
    jb = JitterBuffer(P, 2, target_delay=3, adaptive=False)
    outs = []
    for i in range(50):
        assert jb.push(i, pkt(i, 2)) is Arrival.ACCEPTED
        outs.append(jb.pop())
    assert outs[:2] == [None, None]  # pre-roll: 3 packets
    outs += [jb.pop() for _ in range(3)]
    ids = [ident(o) for o in outs[2:]]
    assert ids == [*range(50), None]
    s = jb.stats()
    assert (s.played, s.lost, s.inserted, s.late, s.current_delay) == (50, 0, 1, 0, 0)
    counts_consistent(jb)


def test_reordered_within_target_plays_in_order_without_loss():
    order = [1, 0, 2, 5, 3, 4, 7, 6, 8, 9, 11, 10]
    jb = JitterBuffer(P, target_delay=3, adaptive=False)
    outs = []
    for seq in order:
        jb.push(seq, pkt(seq))
        outs.append(jb.pop())
    outs += [jb.pop() for _ in range(3)]
    assert [ident(o) for o in outs if o is not None] == [*range(12), None]
    assert jb.stats().lost == jb.stats().late == 0


def stream_with_gap(conceal: str) -> tuple[JitterBuffer, list[np.ndarray | None]]:
    jb = JitterBuffer(8, target_delay=2, adaptive=False, conceal=conceal, fade_samples=4)
    jb.push(0, pkt(0, p=8))
    jb.push(1, pkt(1, p=8))
    outs = [jb.pop(), jb.pop()]  # 0, 1
    jb.push(3, pkt(3, p=8))
    jb.push(4, pkt(4, p=8))  # 2 never arrives (depth 3 >= target 2 at its turn)
    outs += [jb.pop() for _ in range(3)]
    return jb, outs


def test_missing_packet_concealed_with_silence_and_counted_lost():
    jb, outs = stream_with_gap("silence")
    assert [ident(o, 8) for o in outs] == [0, 1, None, 3, 4]
    assert outs[2].shape == (1, 8) and outs[2].dtype == np.float32
    s = jb.stats()
    assert (s.lost, s.played, s.inserted) == (1, 4, 0)
    assert jb.push(2, pkt(2, p=8)) is Arrival.LATE
    assert jb.stats().late == 1
    counts_consistent(jb)


def test_fade_concealment_continues_the_last_tail_then_fades():
    _, outs = stream_with_gap("fade")
    last = pkt(1, p=8)[0]
    expected = np.zeros(8, np.float32)
    expected[:4] = last[::-1][:4] * np.array([1.0, 0.75, 0.5, 0.25], np.float32)
    np.testing.assert_allclose(outs[2][0], expected, rtol=1e-6)
    assert expected[0] == last[-1]  # no step at the packet boundary


def test_consecutive_fade_concealment_decays_to_silence():
    jb = JitterBuffer(8, target_delay=1, adaptive=False, conceal="fade")
    jb.push(0, pkt(0, p=8))
    assert ident(jb.pop(), 8) == 0
    first, second = jb.pop(), jb.pop()  # stall: inserted, holding for packet 1
    assert first.any() and not second.any()
    assert jb.stats().inserted == 2 and jb.stats().lost == 0


def test_stall_holds_instead_of_losing_then_resumes():
    jb = JitterBuffer(P, target_delay=2, adaptive=False)
    for i in range(3):
        jb.push(i, pkt(i))
    ids = [ident(jb.pop()) for _ in range(5)]  # 0 1 2, then the sender stalls
    for i in range(3, 6):
        jb.push(i, pkt(i))
    ids += [ident(jb.pop()) for _ in range(3)]
    assert ids == [0, 1, 2, None, None, 3, 4, 5]
    s = jb.stats()
    assert (s.lost, s.inserted, s.played) == (0, 2, 6)


def test_gap_at_end_of_stream_is_declared_lost_after_waiting_target_pops():
    jb = JitterBuffer(P, target_delay=3, adaptive=False)
    for i in (0, 1, 2, 4):  # 3 lost; afterwards only 4 is newer, depth 2 < target 3
        jb.push(i, pkt(i))
    ids = [ident(jb.pop()) for _ in range(9)]
    assert ids == [0, 1, 2, None, None, None, None, 4, None]
    s = jb.stats()
    assert (s.inserted, s.lost) == (4, 1)  # held 3 pops, then gave up on 3


def test_duplicates_discarded_and_counted():
    jb = JitterBuffer(P, target_delay=2, adaptive=False)
    assert jb.push(0, pkt(0)) is Arrival.ACCEPTED
    assert jb.push(0, pkt(0)) is Arrival.DUPLICATE  # before start
    jb.push(1, pkt(1))
    assert jb.push(1, pkt(1)) is Arrival.DUPLICATE
    assert ident(jb.pop()) == 0
    assert jb.push(0, pkt(0)) is Arrival.LATE  # a copy of a played packet is late
    s = jb.stats()
    assert (s.duplicates, s.late, s.played, s.buffered) == (2, 1, 1, 1)
    counts_consistent(jb)


def test_sequence_wraps_around_2_pow_32():
    start = MOD - 5
    seqs = [(start + i) % MOD for i in range(12)]
    order = seqs[:]
    order[4], order[5] = order[5], order[4]  # 0 arrives before 2**32 - 1
    jb = JitterBuffer(P, target_delay=3, adaptive=False)
    outs = []
    for seq in order:
        assert jb.push(seq, pkt((seq - start) % MOD)) is Arrival.ACCEPTED
        outs.append(jb.pop())
    outs += [jb.pop() for _ in range(2)]
    assert [ident(o) for o in outs if o is not None] == list(range(12))
    s = jb.stats()
    assert (s.lost, s.late, s.resyncs) == (0, 0, 0)


def test_far_ahead_or_behind_packets_resync_the_stream():
    jb = JitterBuffer(P, target_delay=2, max_delay=4, adaptive=False, window=8)
    for i in range(4):
        jb.push(i, pkt(i))
    assert ident(jb.pop()) == 0
    assert jb.push(1000, pkt(1000)) is Arrival.RESYNC  # sender jumped
    s = jb.stats()
    assert (s.dropped, s.resyncs, s.started, s.buffered) == (3, 1, False, 1)
    assert jb.pop() is None  # pre-rolling again
    jb.push(1001, pkt(1001))
    assert [ident(jb.pop()) for _ in range(2)] == [1000, 1001]
    assert jb.push(995, pkt(995)) is Arrival.LATE  # within the window behind: late
    assert jb.push(7, pkt(7)) is Arrival.RESYNC  # sender restarted from a low seq
    counts_consistent(jb)


def test_adaptive_delay_rises_with_losses_and_recovers_within_bounds():
    jb = JitterBuffer(P, target_delay=2, min_delay=2, max_delay=6, clean_packets=10)
    seq, targets = 0, []
    for _ in range(60):  # every 3rd packet lost
        if seq % 3 != 1:
            jb.push(seq, pkt(seq))
        seq += 1
        jb.pop()
        targets.append(jb.target_delay)
    assert max(targets) == 6 and jb.stats().lost > 0
    for _ in range(200):  # clean stream
        jb.push(seq, pkt(seq))
        seq += 1
        jb.pop()
        targets.append(jb.target_delay)
    s = jb.stats()
    assert s.target_delay == 2 and s.dropped > 0  # latency shed by discarding packets
    assert s.current_delay <= 3
    assert all(2 <= t <= 6 for t in targets)
    counts_consistent(jb)


def test_steady_stream_at_target_depth_is_never_shed():
    jb = JitterBuffer(P, target_delay=3, min_delay=3, max_delay=6, clean_packets=5)
    ids = []
    for i in range(100):
        jb.push(i, pkt(i))
        out = jb.pop()
        if out is not None:
            ids.append(ident(out))
    assert ids == list(range(98))
    s = jb.stats()
    assert (s.dropped, s.lost, s.inserted, s.target_delay) == (0, 0, 0, 3)


def test_late_packets_raise_the_target():
    jb = JitterBuffer(P, target_delay=1, max_delay=3)
    jb.push(1, pkt(1))
    jb.pop()
    for _ in range(5):
        assert jb.push(0, pkt(0)) is Arrival.LATE
    assert jb.target_delay == 3


def test_validation():
    jb = JitterBuffer(P, 2)
    with pytest.raises(ValueError, match="shape"):
        jb.push(0, np.zeros((1, P), np.float32))
    with pytest.raises(ValueError, match="float"):
        jb.push(0, np.zeros((2, P), np.int16))
    with pytest.raises(ValueError, match="2\\*\\*32"):
        jb.push(MOD, np.zeros((2, P), np.float32))
    assert jb.stats().received == 0
    for bad in [
        dict(min_delay=3, target_delay=2),
        dict(max_delay=8, window=8),
        dict(conceal="repeat"),
        dict(fade_samples=P + 1),
    ]:
        with pytest.raises(ValueError):
            JitterBuffer(P, **bad)


def simulate(jb, n, base, delays, drops, dups, tail):
    """Packet i is sent at tick i with seq base + i and arrives at tick i + delay; each tick
    pushes its arrivals, then pops once. Returns the pop results."""
    arrivals: dict[int, list[int]] = defaultdict(list)
    for i in range(n):
        if i not in drops:
            arrivals[i + delays[i]].append(i)
    for i, d in dups:
        if i not in drops:
            arrivals[i + d].append(i)
    outs = []
    for t in range(n + max(delays) + tail):
        for i in arrivals[t]:
            jb.push((base + i) % MOD, pkt(i))
        outs.append(jb.pop())
    return outs


@st.composite
def network(draw, max_delay):
    n = draw(st.integers(1, 40))
    delays = draw(st.lists(st.integers(0, max_delay), min_size=n, max_size=n))
    drops = draw(st.sets(st.integers(0, n - 1), max_size=n // 3))
    dups = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, max_delay)), max_size=5))
    base = draw(st.one_of(st.integers(0, MOD - 1), st.integers(MOD - 45, MOD - 1)))
    return n, base, delays, drops, dups


@settings(max_examples=120, deadline=None)
@given(data=st.data(), d=st.integers(0, 4), conceal=st.sampled_from(["silence", "fade"]))
def test_jitter_within_target_plays_every_received_packet_in_order(data, d, conceal):
    n, base, delays, drops, dups = data.draw(network(d))
    jb = JitterBuffer(P, target_delay=d + 1, max_delay=8, adaptive=False, conceal=conceal)
    outs = simulate(jb, n, base, delays, drops, dups, tail=(d + 2) * (n + 1))
    sent = [i for i in range(n) if i not in drops]
    first = next((k for k, o in enumerate(outs) if o is not None), len(outs))
    started = outs[first:]
    assert all(o is not None for o in started)  # once started, always a packet
    ids = [classify(o, conceal) for o in started]
    played = [i for i in ids if i is not None]
    assert played == sent  # all received packets, in order, none invented or repeated
    s = jb.stats()
    gaps = sum(1 for i in drops if sent and sent[0] < i < sent[-1])
    assert (s.played, s.lost, s.late, s.dropped, s.resyncs) == (len(sent), gaps, 0, 0, 0)
    assert s.duplicates == sum(1 for i, _ in dups if i not in drops)
    assert len(started) == s.played + s.lost + s.inserted
    counts_consistent(jb)


@settings(max_examples=120, deadline=None)
@given(data=st.data(), d=st.integers(0, 12), clean=st.integers(3, 30))
def test_adaptive_any_network_never_invents_reorders_or_miscounts(data, d, clean):
    n, base, delays, drops, dups = data.draw(network(d))
    jb = JitterBuffer(P, target_delay=1, max_delay=6, adaptive=True, clean_packets=clean)
    outs = simulate(jb, n, base, delays, drops, dups, tail=8)
    first = next((k for k, o in enumerate(outs) if o is not None), len(outs))
    assert all(o is not None for o in outs[first:])
    played = [i for i in (classify(o, "silence") for o in outs[first:]) if i is not None]
    assert played == sorted(set(played))  # strictly in order, no repeats
    assert not set(played) & drops
    s = jb.stats()
    assert s.resyncs == 0 and s.played == len(played)
    assert len(outs) - first == s.played + s.lost + s.inserted
    counts_consistent(jb)


@settings(max_examples=150, deadline=None)
@given(
    n=st.integers(1, 40),
    swaps=st.lists(st.integers(0, 39), max_size=10),
    drops=st.sets(st.integers(0, 39), max_size=5),
    reorder=st.integers(1, 6),
    base=st.sampled_from([0, MOD - 7]),
)
def test_pull_mode_reorders_within_the_window_and_conceals_only_losses(
    n, swaps, drops, reorder, base
):
    drops = {i for i in drops if i < n}
    order = list(range(n))
    for i in swaps:  # adjacent swaps: each packet at most a few places out of order
        if i + 1 < n:
            order[i], order[i + 1] = order[i + 1], order[i]
    jb = JitterBuffer(P, target_delay=1, min_delay=1, max_delay=1, window=64, adaptive=False)
    out: list[int | None] = []
    for i in order:
        if i in drops:
            continue
        assert jb.push((base + i) % MOD, pkt(i)) in (Arrival.ACCEPTED, Arrival.LATE)
        while (x := jb.pop_ready(reorder)) is not None:
            out.append(ident(x))
    while (x := jb.pop_ready(0)) is not None:  # end of stream: conceal what is missing
        out.append(ident(x))
    s = jb.stats()
    played = [i for i in out if i is not None]
    assert played == sorted(played)  # never out of order, nothing repeated
    assert s.inserted == 0 and s.played + s.late == n - len(drops)
    kept = [i for i in range(n) if i not in drops]
    if kept:  # every slot from the first packet received to the last is played or concealed
        first = next(i for i in order if i not in drops)
        assert len(out) == max(kept) - first + 1
    pos = {k: order.index(k) for k in range(n)}
    in_window = all(pos[j] > pos[k] for k in range(n) for j in range(k + reorder, n))
    if not drops and in_window and order[0] == 0:
        assert played == list(range(n)) and s.lost == 0 and s.late == 0
    counts_consistent(jb)
