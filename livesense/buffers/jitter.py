"""Adaptive jitter buffer for network audio packets with uint32 sequence numbers.

The network side calls :meth:`JitterBuffer.push` with ``(seq, samples)`` in arrival order; the
playout side calls :meth:`JitterBuffer.pop` once per packet period. Sequence numbers wrap at
2**32 and are unwrapped against the newest one received.

Playout rules (``depth`` = newest received seq - next seq to play + 1, in packets):

- Pre-roll: :meth:`pop` returns None until the buffered span reaches ``target_delay`` packets,
  or ``target_delay`` pops were made with audio buffered (so a short stream still plays); then
  it returns exactly one ``(channels, packet_samples)`` packet per call, forever.
- Next packet present: it is played.
- Next packet missing and ``depth >= target_delay`` (enough newer audio has arrived), or
  newer audio exists and we already waited ``target_delay`` pops for it: the packet is declared
  ``lost``, concealed, and skipped. Otherwise playout holds: a concealment packet is
  ``inserted`` without advancing, which raises the real delay by one packet (this is also what
  happens at a stall or the end of a stream).
- Concealment: ``"silence"`` (zeros) or ``"fade"``: right after real audio, the last packet's
  tail mirrored in time (so the waveform has no step) under a linear fade to zero over
  ``fade_samples``, then zeros.
- A packet whose slot was already played or skipped is ``late`` and discarded; one already
  buffered is a ``duplicate`` and discarded.
- A packet more than ``window`` packets ahead of (or behind) the playout position is taken as a
  stream discontinuity (sender restart, huge gap): the buffer resyncs — buffered packets are
  discarded (counted ``dropped``), and pre-roll starts again from that packet (pop returns None
  meanwhile).

Adaptation (``adaptive=True``): every lost or late packet raises ``target_delay`` by one (up to
``max_delay``); after ``clean_packets`` consecutive real packets it is lowered by one (down to
``min_delay``) and, if the buffer is deeper than the target, one buffered packet is discarded
(counted ``dropped``) to shed a packet of latency.

Accounting: ``received == played + late + duplicates + dropped + buffered`` and, after
playout started, ``pops == played + lost + inserted`` (pops while re-buffering excluded).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass
from typing import Literal

import numpy as np

SEQ_MOD = 2**32


class Arrival(enum.Enum):
    """What :meth:`JitterBuffer.push` did with a packet."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # already buffered: discarded
    LATE = "late"  # its slot was already played or skipped: discarded
    RESYNC = "resync"  # too far from the playout position: buffer restarted from this packet


@dataclass(frozen=True)
class JitterStats:
    """A consistent snapshot of a :class:`JitterBuffer` (counts in packets)."""

    received: int  # push calls with a valid packet
    played: int  # real packets returned by pop
    lost: int  # missing packets concealed and skipped
    inserted: int  # concealment packets played while holding for a missing packet
    late: int
    duplicates: int
    dropped: int  # buffered packets discarded (latency shedding, resync)
    resyncs: int
    target_delay: int
    current_delay: int  # newest received seq - next seq to play + 1 (0 when empty)
    buffered: int  # packets held now
    started: bool


class JitterBuffer:
    """Reorders, delays and conceals a packetised audio stream (see module docstring)."""

    def __init__(
        self,
        packet_samples: int,
        channels: int = 1,
        *,
        target_delay: int = 2,
        min_delay: int = 1,
        max_delay: int = 16,
        window: int | None = None,
        conceal: Literal["silence", "fade"] = "silence",
        fade_samples: int | None = None,
        adaptive: bool = True,
        clean_packets: int = 200,
    ):
        if packet_samples <= 0 or channels <= 0:
            raise ValueError(
                f"packet_samples and channels must be positive, got {packet_samples}, {channels}"
            )
        if not 1 <= min_delay <= target_delay <= max_delay:
            raise ValueError(
                "need 1 <= min_delay <= target_delay <= max_delay, got "
                f"{min_delay}, {target_delay}, {max_delay}"
            )
        window = max(32, 4 * max_delay) if window is None else window
        if window <= max_delay:
            raise ValueError(f"window ({window}) must exceed max_delay ({max_delay})")
        if conceal not in ("silence", "fade"):
            raise ValueError(f"conceal must be 'silence' or 'fade', got {conceal!r}")
        fade_samples = packet_samples if fade_samples is None else fade_samples
        if not 1 <= fade_samples <= packet_samples:
            raise ValueError(f"fade_samples must be in [1, {packet_samples}], got {fade_samples}")
        if clean_packets <= 0:
            raise ValueError(f"clean_packets must be positive, got {clean_packets}")
        self.packet_samples = int(packet_samples)
        self.channels = int(channels)
        self.window = int(window)
        self.min_delay = int(min_delay)
        self.max_delay = int(max_delay)
        self.initial_delay = int(target_delay)
        self.conceal = conceal
        self.fade_samples = int(fade_samples)
        self.adaptive = adaptive
        self.clean_packets = int(clean_packets)
        shape = (self.channels, self.packet_samples)
        self._data = np.zeros((self.window, *shape), dtype=np.float32)  # (W, C, P)
        self._present = np.zeros(self.window, dtype=bool)
        self._slot_seq = np.zeros(self.window, dtype=np.int64)  # unwrapped seq held per slot
        self._last = np.zeros(shape, dtype=np.float32)  # (C, P) last real packet played
        self._fade_gain = (1.0 - np.arange(self.fade_samples) / self.fade_samples).astype(
            np.float32
        )  # (F,) 1 -> 1/F
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Start a new stream: empty buffer, initial target, zero counters."""
        with self._lock:
            self._present[:] = False
            self._has_ref = False  # no seq received yet: nothing to unwrap against
            self._started = False
            self._next = 0  # unwrapped seq to play next (before start: lowest buffered)
            self._hi = 0  # highest unwrapped seq received
            self._count = 0
            self._held = 0  # consecutive inserted packets at the current position
            self._clean = 0  # consecutive real packets since the last problem
            self._shrink_pending = False
            self._last_real = False
            self._target = self.initial_delay
            self._received = self._played = self._lost = self._inserted = 0
            self._late = self._duplicates = self._dropped = self._resyncs = 0

    @property
    def target_delay(self) -> int:
        with self._lock:
            return self._target

    @property
    def lost(self) -> int:
        """Packets declared lost so far (cheaper than :meth:`stats`)."""
        return self._lost

    def stats(self) -> JitterStats:
        with self._lock:
            return JitterStats(
                received=self._received,
                played=self._played,
                lost=self._lost,
                inserted=self._inserted,
                late=self._late,
                duplicates=self._duplicates,
                dropped=self._dropped,
                resyncs=self._resyncs,
                target_delay=self._target,
                current_delay=self._depth() if self._count or self._started else 0,
                buffered=self._count,
                started=self._started,
            )

    # -- network side -------------------------------------------------------------------------

    def push(self, seq: int, samples: np.ndarray) -> Arrival:
        """Offer packet ``seq`` (uint32) with ``samples`` (channels, packet_samples) float."""
        if isinstance(seq, bool) or not isinstance(seq, (int, np.integer)):
            raise ValueError(f"seq must be an int, got {type(seq).__name__}")
        if not 0 <= seq < SEQ_MOD:
            raise ValueError(f"seq must be in [0, 2**32), got {seq}")
        x = self._check_packet(samples)  # (C, P)
        with self._lock:
            self._received += 1
            ext = self._unwrap(int(seq))
            if self._count == 0 and not self._started:
                self._next = self._hi = ext
                self._store(ext, x)
                return Arrival.ACCEPTED
            d = ext - self._next
            if self._started:
                if d >= self.window or d < -self.window:
                    return self._resync(ext, x)
                if d < 0:
                    self._late += 1
                    self._grow()
                    return Arrival.LATE
            else:  # pre-roll: the buffered span [next, hi] may still extend backwards
                if d >= self.window or self._hi - ext >= 2 * self.window:
                    return self._resync(ext, x)
                if self._hi - ext >= self.window:
                    self._late += 1
                    return Arrival.LATE
                self._next = min(self._next, ext)
            slot = ext % self.window
            if self._present[slot]:
                assert self._slot_seq[slot] == ext, "jitter window invariant broken"
                self._duplicates += 1
                return Arrival.DUPLICATE
            self._store(ext, x)
            return Arrival.ACCEPTED

    # -- playout side -------------------------------------------------------------------------

    def pop(self) -> np.ndarray | None:
        """Next packet (channels, packet_samples) float32 — real or concealed — or None while
        pre-rolling (before the first start and after a resync)."""
        with self._lock:
            if not self._started:
                if self._count == 0:
                    return None
                self._held += 1  # pre-roll pops with audio waiting
                if self._depth() < self._target and self._held < self._target:
                    return None
                self._started = True
                self._held = 0
            if self._shrink_pending:
                self._shrink_pending = False
                slot = self._next % self.window
                if self._depth() > self._target and self._present[slot]:
                    self._present[slot] = False  # shed one packet of latency
                    self._count -= 1
                    self._dropped += 1
                    self._advance()
            if (out := self._play_next()) is not None:
                self._clean += 1
                if self.adaptive and self._clean >= self.clean_packets:
                    self._clean = 0
                    self._target = max(self.min_delay, self._target - 1)
                    self._shrink_pending = True
                return out
            depth = self._depth()
            if depth >= self._target or (depth > 0 and self._held >= self._target):
                self._lost += 1
                self._advance()
                self._grow()
            else:
                self._inserted += 1
                self._held += 1
                self._clean = 0
            return self._concealment()

    def pop_ready(self, reorder: int) -> np.ndarray | None:
        """Pull-mode playout for a consumer with no clock (a server rendering what arrived):
        the next packet if it is here; a concealment packet (counted ``lost``) if it is
        missing and at least ``reorder`` newer packets arrived (``reorder=0``: at once, to drain
        at the end of a stream); otherwise None (wait: a late packet may still fill the gap).
        Nothing is ever ``inserted``; there is no pre-roll."""
        with self._lock:
            if self._count == 0:
                return None
            self._started = True
            if (out := self._play_next()) is not None:
                return out
            if self._hi - self._next < reorder:
                return None
            self._lost += 1
            self._advance()
            return self._concealment()

    # -- internals (lock held) ----------------------------------------------------------------

    def _play_next(self) -> np.ndarray | None:
        """The next packet (C, P), taken out and counted ``played``, if it is buffered."""
        slot = self._next % self.window
        if not self._present[slot]:
            return None
        out = self._data[slot].copy()
        self._present[slot] = False
        self._count -= 1
        self._played += 1
        self._advance()
        self._last[:] = out
        self._last_real = True
        return out

    def _depth(self) -> int:
        return max(0, self._hi - self._next + 1)

    def _advance(self) -> None:
        self._next += 1
        self._held = 0

    def _grow(self) -> None:
        self._clean = 0
        if self.adaptive and self._started:
            self._target = min(self.max_delay, self._target + 1)

    def _unwrap(self, seq: int) -> int:
        """Map a uint32 seq to the unwrapped value nearest the newest received one."""
        if not self._has_ref:
            self._has_ref = True
            return seq
        d = (seq - self._hi) % SEQ_MOD
        if d >= SEQ_MOD // 2:
            d -= SEQ_MOD
        return self._hi + d

    def _store(self, ext: int, x: np.ndarray) -> None:
        slot = ext % self.window
        self._data[slot] = x
        self._slot_seq[slot] = ext
        self._present[slot] = True
        self._count += 1
        self._hi = max(self._hi, ext)

    def _resync(self, ext: int, x: np.ndarray) -> Arrival:
        self._dropped += self._count
        self._resyncs += 1
        self._present[:] = False
        self._count = 0
        self._started = False
        self._held = 0  # pre-roll restarts
        self._next = self._hi = ext
        self._store(ext, x)
        return Arrival.RESYNC

    def _concealment(self) -> np.ndarray:
        out = np.zeros((self.channels, self.packet_samples), dtype=np.float32)  # (C, P)
        if self.conceal == "fade" and self._last_real:
            f = self.fade_samples
            out[:, :f] = self._last[:, ::-1][:, :f] * self._fade_gain  # mirrored tail, faded
        self._last_real = False
        return out

    def _check_packet(self, samples: np.ndarray) -> np.ndarray:
        x = np.asarray(samples)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(f"packet samples must be float, got dtype {x.dtype}")
        if x.ndim == 1 and self.channels == 1:
            x = x[None, :]  # (1, P)
        if x.shape != (self.channels, self.packet_samples):
            raise ValueError(
                f"packet must have shape ({self.channels}, {self.packet_samples}), got {x.shape}"
            )
        return x
