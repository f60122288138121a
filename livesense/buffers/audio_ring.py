"""A fixed-capacity multichannel audio sample ring for one producer and one consumer thread.

Storage is preallocated float32 ``(channels, capacity)``; positions are absolute sample counts
(``write_pos``, ``read_pos``), the slot of position ``p`` is ``p % capacity``. What happens when
a write does not fit is an explicit :class:`OverflowPolicy`, and every sample that is lost or
invented is counted, so ``written == read_total + available + overrun_samples`` always holds.

One lock guards positions and counters; sample copies also run under it (a memcpy of one chunk
takes microseconds) so that an ``OVERWRITE`` producer can never tear a concurrent read.
Blocking waits release the lock.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass

import numpy as np


class OverflowPolicy(enum.Enum):
    """What :meth:`AudioRing.write` does when the data does not fit."""

    BLOCK = "block"  # wait up to ``timeout`` s for space (in pieces), then raise RingTimeout
    OVERWRITE = "overwrite"  # drop the oldest unread samples and count them as overruns
    ERROR = "error"  # raise RingOverflow and write nothing


class RingError(RuntimeError):
    """Base class of ring buffer errors."""


class RingOverflow(RingError):
    """An ``ERROR``-policy write did not fit; nothing was written."""


class RingTimeout(RingError, TimeoutError):
    """A ``BLOCK``-policy write timed out; ``written`` samples (a prefix) were written."""

    def __init__(self, message: str, written: int):
        super().__init__(message)
        self.written = written


class RingClosed(RingError):
    """The ring was closed; writes are refused."""


@dataclass(frozen=True)
class RingStats:
    """A consistent snapshot of an :class:`AudioRing`'s counters (all in samples or events)."""

    written: int
    read_total: int
    available: int
    overrun_samples: int
    overruns: int
    underrun_samples: int
    underruns: int
    read_pos: int
    write_pos: int


class AudioRing:
    """Fixed-capacity float32 ring of ``(channels, capacity)`` samples (see module docstring).

    ``timeout`` (seconds, ``None`` = forever) bounds how long a ``BLOCK`` write waits for space.
    """

    def __init__(
        self,
        capacity: int,
        channels: int = 1,
        policy: OverflowPolicy = OverflowPolicy.BLOCK,
        timeout: float | None = None,
    ):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        if not isinstance(policy, OverflowPolicy):
            raise ValueError(f"policy must be an OverflowPolicy, got {policy!r}")
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        self._capacity = int(capacity)
        self._channels = int(channels)
        self._policy = policy
        self._timeout = timeout
        self._buf = np.zeros((self._channels, self._capacity), dtype=np.float32)  # (C, capacity)
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)  # signalled when samples are consumed
        self._data = threading.Condition(self._lock)  # signalled when samples are written
        self._closed = False
        self._reset_counters()

    def _reset_counters(self) -> None:
        self._wp = 0  # absolute position of the next sample to write
        self._rp = 0  # absolute position of the next sample to read
        self._view_pos: int | None = None  # read_pos when the last read_view was taken
        self._written = 0
        self._read_total = 0
        self._overrun_samples = 0
        self._overruns = 0
        self._underrun_samples = 0
        self._underruns = 0

    # -- properties ---------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def channels(self) -> int:
        return self._channels

    @property
    def policy(self) -> OverflowPolicy:
        return self._policy

    @property
    def available(self) -> int:
        """Samples ready to read."""
        with self._lock:
            return self._wp - self._rp

    @property
    def free(self) -> int:
        """Samples that can be written without overflowing."""
        with self._lock:
            return self._capacity - (self._wp - self._rp)

    @property
    def read_pos(self) -> int:
        """Absolute stream position (pts in samples) of the next sample :meth:`read` returns."""
        with self._lock:
            return self._rp

    @property
    def write_pos(self) -> int:
        """Absolute stream position of the next sample written (= ``written``)."""
        with self._lock:
            return self._wp

    @property
    def written(self) -> int:
        return self.stats().written

    @property
    def read_total(self) -> int:
        return self.stats().read_total

    @property
    def overrun_samples(self) -> int:
        """Unread samples dropped by ``OVERWRITE`` writes."""
        return self.stats().overrun_samples

    @property
    def overruns(self) -> int:
        """``OVERWRITE`` writes that dropped samples."""
        return self.stats().overruns

    @property
    def underrun_samples(self) -> int:
        """Zero samples invented by ``read(..., pad=True)``."""
        return self.stats().underrun_samples

    @property
    def underruns(self) -> int:
        """Padded reads that came up short."""
        return self.stats().underruns

    @property
    def closed(self) -> bool:
        return self._closed

    def stats(self) -> RingStats:
        with self._lock:
            return RingStats(
                written=self._written,
                read_total=self._read_total,
                available=self._wp - self._rp,
                overrun_samples=self._overrun_samples,
                overruns=self._overruns,
                underrun_samples=self._underrun_samples,
                underruns=self._underruns,
                read_pos=self._rp,
                write_pos=self._wp,
            )

    # -- producer -----------------------------------------------------------------------------

    def write(self, data: np.ndarray) -> int:
        """Append ``data`` (channels, n) — or (n,) for a mono ring — applying the overflow policy.

        Returns the number of samples accepted (always ``n``; samples an ``OVERWRITE`` later
        drops still count as written). A ``BLOCK`` write longer than the free space is written
        in pieces as the consumer frees space; on timeout :class:`RingTimeout` says how many.
        """
        x = self._check_input(data)  # (C, n)
        n = x.shape[1]
        if n == 0:
            return 0
        if self._policy is OverflowPolicy.BLOCK:
            return self._write_blocking(x)
        with self._lock:
            if self._closed:
                raise RingClosed("write to a closed AudioRing")
            if self._policy is OverflowPolicy.ERROR:
                free = self._capacity - (self._wp - self._rp)
                if n > free:
                    raise RingOverflow(
                        f"AudioRing full: {n} samples do not fit ({free} of "
                        f"{self._capacity} free); nothing written"
                    )
                self._copy_in(x, self._wp)
            else:  # OVERWRITE: keep only the newest `capacity` samples of ring + data
                new_rp = max(self._rp, self._wp + n - self._capacity)
                if new_rp > self._rp:
                    self._overrun_samples += new_rp - self._rp
                    self._overruns += 1
                    self._rp = new_rp
                keep = min(n, self._capacity)
                self._copy_in(x[:, n - keep :], self._wp + n - keep)
            self._wp += n
            self._written += n
            self._data.notify_all()
        return n

    def _write_blocking(self, x: np.ndarray) -> int:
        n = x.shape[1]
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        done = 0
        with self._lock:
            while done < n:
                if self._closed:
                    raise RingClosed(f"AudioRing closed after {done} of {n} samples were written")
                free = self._capacity - (self._wp - self._rp)
                if free == 0:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise RingTimeout(
                            f"AudioRing full for {self._timeout} s: wrote {done} of {n} samples",
                            written=done,
                        )
                    self._space.wait(left)
                    continue
                k = min(free, n - done)
                self._copy_in(x[:, done : done + k], self._wp)
                self._wp += k
                self._written += k
                done += k
                self._data.notify_all()
        return done

    # -- consumer -----------------------------------------------------------------------------

    def read(self, n: int, *, pad: bool = False) -> np.ndarray:
        """Return up to ``n`` samples (channels, k) as a new array.

        With ``pad=True`` the result always has ``n`` samples: the missing tail is zeros and is
        counted in ``underrun_samples`` / ``underruns``. ``read_pos`` only advances over real
        samples, so padding never skips stream content.
        """
        self._check_count(n)
        out = np.empty((self._channels, n), dtype=np.float32)  # (C, n)
        k = self.read_into(out, pad=pad)
        return out if pad else out[:, :k]

    def read_into(self, out: np.ndarray, *, pad: bool = False) -> int:
        """Like :meth:`read` into a preallocated float32 ``out`` (channels, n); returns real k."""
        if out.ndim != 2 or out.shape[0] != self._channels or out.dtype != np.float32:
            raise ValueError(
                f"out must be float32 ({self._channels}, n), got {out.dtype} {out.shape}"
            )
        n = out.shape[1]
        with self._lock:
            k = min(n, self._wp - self._rp)
            self._copy_out(out[:, :k], self._rp)
            self._consume(k)
            if pad and k < n:
                self._underrun_samples += n - k
                self._underruns += 1
        if pad and k < n:
            out[:, k:] = 0.0
        return k

    def read_blocking(self, n: int, timeout: float | None = None) -> np.ndarray:
        """Wait until ``n`` samples were read (consuming them as they arrive) and return them.

        On timeout, or when the ring is closed, returns the fewer samples read so far (never
        loses any). ``n`` may exceed ``capacity`` (a ``BLOCK`` producer refills meanwhile).
        """
        self._check_count(n)
        out = np.empty((self._channels, n), dtype=np.float32)  # (C, n)
        deadline = None if timeout is None else time.monotonic() + timeout
        got = 0
        with self._lock:
            while got < n:
                k = min(n - got, self._wp - self._rp)
                if k > 0:
                    self._copy_out(out[:, got : got + k], self._rp)
                    self._consume(k)
                    got += k
                    continue
                if self._closed:
                    break
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._data.wait(left)
        return out[:, :got]

    def read_view(self, n: int) -> tuple[np.ndarray, ...]:
        """Zero-copy read-only views of up to ``n`` unread samples, without consuming them.

        One view (channels, k) when the span is contiguous, two when it wraps around the end of
        the storage. Call :meth:`advance` to consume. Views stay valid until then, except that
        an ``OVERWRITE`` producer may overwrite them on overflow (``advance`` reports that).
        """
        self._check_count(n)
        with self._lock:
            k = min(n, self._wp - self._rp)
            s = self._rp % self._capacity
            first = min(k, self._capacity - s)
            views = [self._buf[:, s : s + first]]  # (C, first)
            if first < k:
                views.append(self._buf[:, : k - first])  # (C, k - first)
            self._view_pos = self._rp
        for v in views:
            v.flags.writeable = False
        return tuple(views)

    def advance(self, n: int) -> int:
        """Consume ``n`` samples counted from where the last :meth:`read_view` started
        (or from ``read_pos`` if there was none); returns how many were still unread.

        The result is less than ``n`` only if an ``OVERWRITE`` write dropped some of the viewed
        samples meanwhile (those are counted as overruns, not reads, and their view data may be
        garbage).
        """
        self._check_count(n)
        with self._lock:
            start = self._rp if self._view_pos is None else self._view_pos
            if start + n > self._wp:
                raise ValueError(
                    f"cannot advance {n} samples: only {self._wp - start} were available"
                )
            k = max(0, start + n - self._rp)
            self._consume(k)
        return k

    # -- lifecycle ----------------------------------------------------------------------------

    def clear(self) -> None:
        """Start a new stream: forget all samples, positions and counters (storage is kept)."""
        with self._lock:
            self._reset_counters()
            self._space.notify_all()

    def close(self) -> None:
        """Wake all waiters: further writes raise :class:`RingClosed`, blocking reads return
        what is left. Already written samples can still be read."""
        with self._lock:
            self._closed = True
            self._space.notify_all()
            self._data.notify_all()

    # -- internals (call with the lock held) --------------------------------------------------

    def _consume(self, k: int) -> None:
        self._rp += k
        self._read_total += k
        self._view_pos = None
        if k:
            self._space.notify_all()

    def _copy_in(self, x: np.ndarray, pos: int) -> None:
        """Store x (C, k), k <= capacity, at absolute position ``pos``."""
        k = x.shape[1]
        s = pos % self._capacity
        first = min(k, self._capacity - s)
        self._buf[:, s : s + first] = x[:, :first]
        self._buf[:, : k - first] = x[:, first:]

    def _copy_out(self, out: np.ndarray, pos: int) -> None:
        """Fill out (C, k), k <= available, from absolute position ``pos``."""
        k = out.shape[1]
        s = pos % self._capacity
        first = min(k, self._capacity - s)
        out[:, :first] = self._buf[:, s : s + first]
        out[:, first:] = self._buf[:, : k - first]

    def _check_input(self, data: np.ndarray) -> np.ndarray:
        x = np.asarray(data)
        if not np.issubdtype(x.dtype, np.floating):
            raise ValueError(
                f"AudioRing takes float samples, got dtype {x.dtype} (convert PCM first)"
            )
        if x.ndim == 1 and self._channels == 1:
            x = x[None, :]  # (1, n)
        if x.ndim != 2 or x.shape[0] != self._channels:
            raise ValueError(
                f"AudioRing has {self._channels} channel(s): expected shape "
                f"({self._channels}, n){' or (n,)' if self._channels == 1 else ''}, "
                f"got {x.shape}"
            )
        return x

    @staticmethod
    def _check_count(n: int) -> None:
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise ValueError(f"sample count must be an int >= 0, got {n!r}")
