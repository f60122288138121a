"""One session's audio path: packets -> jitter buffer -> typed pending frames -> renderer -> out.

Packets go through a :class:`JitterBuffer` (sequencing, gap concealment, resync) into a queue of
typed frames (received :class:`AudioChunk` s, :class:`PoseUpdate` s, a ``STOP``
:class:`Control`), which an :class:`~livesense.live.server.workers.AudioWorkers` thread renders
one packet per turn. A packet rendered later than its deadline (arrival + the audio it produced
+ one packet) counts as a miss; a session that keeps missing degrades through its renderer's
:class:`~livesense.models.binaural.FallbackRenderer` (crossfaded to the DSP renderer, nothing
lost) and says so in an ``error`` event and in ``stats``. Audio is never dropped: when the
queue holds more than ``max_pending`` packets' worth of samples the server stops reading the
socket (TCP backpressure). Packets shorter than a chunk are gathered until a chunk's worth has
arrived (or ``stop``), so a client sending tiny packets costs one renderer call per chunk, not
one per packet. A packet missing from the sequence is concealed once ``reorder_packets`` newer
ones arrived (a late one within that window still plays). Pose updates are checked against the session's clock (at most
``pose_horizon_s`` ahead) and the listener's head; consecutive ones for the same sample merge.

A renderer that raises fails the path: nothing more is accepted or kept, the client gets an
``internal`` error event, and ``on_failed`` tells the session to close (1011).

Everything here is thread-safe towards the event loop; outputs leave through ``emit`` (called
from worker threads; the session hands them to the loop).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from livesense.buffers import Arrival, JitterBuffer
from livesense.live.engines import SessionRenderer
from livesense.live.server.config import SessionLimits
from livesense.live.server.events import AudioStats, ErrorEvent, Outbound, PacketStats
from livesense.live.server.protocol import (
    ErrorCode,
    Kind,
    PoseMessage,
    ProtocolError,
    StartConfig,
    check_apart,
    encode_audio,
    pack_frame,
)
from livesense.stats import LatencySummary
from livesense.streaming.frames import AudioChunk, Control, ControlKind, PoseUpdate

__all__ = ["AudioPath", "Emit"]

Emit = Callable[[bytes | Outbound], None]


@dataclass(frozen=True)
class _Received:
    """An audio packet's samples, with the time its packet arrived (``perf_counter``)."""

    chunk: AudioChunk
    arrival: float


class AudioPath:
    """Jitter buffer -> pending frames -> renderer -> binaural frames (see module docstring)."""

    def __init__(
        self,
        session_id: str,
        cfg: StartConfig,
        renderer: SessionRenderer,
        limits: SessionLimits,
        emit: Emit,
        on_drain: Callable[[], None],
    ):
        self.session_id = session_id
        self.cfg = cfg
        self.limits = limits
        self.chunk = limits.chunk_samples
        self._emit = emit
        self._on_drain = on_drain
        self.renderer = renderer
        self.jitter = JitterBuffer(
            self.chunk, 1, target_delay=1, min_delay=1, max_delay=1, window=64, adaptive=False
        )
        self._pending: deque[_Received | PoseUpdate | Control] = deque()
        self._pending_samples = 0  # audio samples in ``_pending``
        self._gather: list[np.ndarray] = []  # short packets, until a chunk's worth arrived
        self._gathered = 0
        self._gather_arrival = 0.0
        self._speaker, self._listener = cfg.speaker, cfg.listener  # the latest scheduled
        self._short: dict[int, int] = {}  # seq -> samples of packets shorter than a chunk
        self._next_seq: int | None = None
        self.samples_in = 0  # accepted (incl. concealed gaps), = next input pts
        self.samples_out = 0
        self.scheduled = False
        self.closed = False
        self.paused = False  # the server stopped reading the socket
        self.finished = threading.Event()  # set once the end marker was processed
        self.on_finished: Callable[[], None] | None = None  # called (worker thread) then
        self.on_failed: Callable[[], None] | None = None  # called (worker thread) on failure
        self.failed: BaseException | None = None
        self._lock = threading.Lock()  # guards the counters below
        self.render_s = 0.0
        self.latency_ms: deque[float] = deque(maxlen=1000)
        self.deadline_misses = 0
        self._recent_miss: deque[bool] = deque(maxlen=limits.miss_window)
        self._seq_out = 0

    # -- event-loop side ----------------------------------------------------------------------

    def push_packet(self, seq: int, x: np.ndarray, t_arrival: float) -> list[ErrorEvent]:
        """Accept a decoded packet (1, n); return error events for the client (if any)."""
        if self.closed:  # failed or released: nothing more is kept
            return []
        n = x.shape[-1]
        if n > self.chunk:
            raise ProtocolError(
                ErrorCode.BAD_SIZE,
                f"audio packet of {n} samples; packets carry at most {self.chunk} samples",
            )
        errors: list[ErrorEvent] = []
        if n == self.chunk:
            padded = x
        else:  # (np.pad costs ten times this: it matters for a flood of tiny packets)
            padded = np.zeros((1, self.chunk), np.float32)
            padded[:, :n] = x
        arrival = self.jitter.push(seq, padded)
        if arrival in (Arrival.LATE, Arrival.DUPLICATE):
            msg = f"audio packet seq {seq} is {arrival.value}; dropped"
            return [ErrorEvent(ErrorCode.OUT_OF_ORDER, msg)]
        if arrival is Arrival.RESYNC:
            self._short.clear()
            self._next_seq = seq
            errors.append(
                ErrorEvent(ErrorCode.SEQ_GAP, f"audio seq jumped to {seq}; stream resynced")
            )
        if self._next_seq is None:
            self._next_seq = seq
        if n < self.chunk:
            self._short[seq] = n
        lost = self._release(self.limits.reorder_packets, t_arrival)
        if lost:
            errors.append(
                ErrorEvent(ErrorCode.SEQ_GAP, f"{lost} audio packet(s) missing; concealed")
            )
        return errors

    def _release(self, reorder: int, t_arrival: float) -> int:
        """Move what the jitter buffer can play into the pending queue; return packets lost."""
        lost_before = self.jitter.lost
        while (out := self.jitter.pop_ready(reorder)) is not None:
            s = self._next_seq
            assert s is not None
            self._next_seq = (s + 1) % 2**32
            m = self._short.pop(s, self.chunk)
            if not self._gather:
                self._gather_arrival = t_arrival
            self._gather.append(out[:, :m])
            self._gathered += m
            self.samples_in += m
            if self._gathered >= self.chunk:
                self._queue_gathered()
        return self.jitter.lost - lost_before

    def _queue_gathered(self) -> None:
        parts, n = self._gather, self._gathered
        if not n:
            return
        x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)
        chunk = AudioChunk(x, self.samples_in - n, self.cfg.sample_rate)
        self._pending.append(_Received(chunk, self._gather_arrival))
        self._pending_samples += n
        self._gather, self._gathered = [], 0

    def push_pose(self, msg: PoseMessage) -> None:
        """Queue a pose update, effective from ``msg.pts`` (None: the next sample received);
        raises ProtocolError(bad_message) for a pts beyond the horizon or a speaker that the
        update would put inside the listener's head."""
        if self.closed:
            return
        pts = self.samples_in if msg.pts is None else msg.pts
        horizon = self.samples_in + int(self.limits.pose_horizon_s * self.cfg.sample_rate)
        if pts > horizon:
            raise ProtocolError(
                ErrorCode.BAD_MESSAGE,
                f"pose.pts {pts} is more than {self.limits.pose_horizon_s:g} s ahead of the "
                f"audio received ({self.samples_in} samples)",
            )
        check_apart(msg.speaker or self._speaker, msg.listener or self._listener)
        self._speaker = msg.speaker or self._speaker
        self._listener = msg.listener or self._listener
        speaker = None if msg.speaker is None else msg.speaker.values
        listener = None if msg.listener is None else msg.listener.values
        last = self._pending[-1] if self._pending else None
        if isinstance(last, PoseUpdate) and last.pts == pts:  # merge: the newer one wins
            speaker = last.speaker if speaker is None else speaker
            listener = last.listener if listener is None else listener
            self._pending[-1] = PoseUpdate(pts, speaker, listener)
        else:
            self._pending.append(PoseUpdate(pts, speaker, listener))

    def push_end(self) -> None:
        """The client sent ``stop``: conceal what is still missing, then the end marker."""
        if self.closed:
            return
        lost = self._release(0, time.perf_counter())
        if lost:
            self._emit(ErrorEvent(ErrorCode.SEQ_GAP, f"{lost} audio packet(s) missing; concealed"))
        self._queue_gathered()
        self._pending.append(Control(ControlKind.STOP))

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pending(self) -> int:
        """Audio waiting for the renderer, in packets (chunks) worth of samples."""
        return -(-self._pending_samples // self.chunk)

    # -- worker side --------------------------------------------------------------------------

    def process_one(self) -> None:
        """Apply queued poses, then render one audio packet (or the end marker)."""
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, PoseUpdate):
                self.renderer.apply_pose(item)
                continue
            if isinstance(item, _Received):
                self._render(item)
            else:
                self._finish()
            break
        if self.paused and self.pending() <= self.limits.max_pending // 2:
            self.paused = False
            self._on_drain()

    def _render(self, item: _Received) -> None:
        t0 = time.perf_counter()
        x = item.chunk.data
        self._pending_samples -= x.shape[-1]
        y = self.renderer.step(x)
        t1 = time.perf_counter()
        self._send(y)
        done = time.perf_counter()
        # A miss: audio came out later than twice its length (plus one packet) after the
        # packet that completed it arrived. A block renderer shared by all sessions (the
        # neural engine) may hold a block for one tick in progress and its own, each shorter
        # than the block while it keeps up; packets that only fill a block emit nothing and
        # are judged with it (their wait is queueing behind the previous block).
        emitted = 0 if y is None else y.shape[-1]
        waited = done - item.arrival
        miss = emitted > 0 and waited > (2 * emitted + self.chunk) / self.cfg.sample_rate
        with self._lock:
            self.render_s += t1 - t0
            self.latency_ms.append(waited * 1000.0)
            self.deadline_misses += miss
            self._recent_miss.append(miss)
            degrade = (
                self.renderer.fallback is not None
                and not self.renderer.degraded
                and sum(self._recent_miss) >= self.limits.miss_degrade
            )
        if degrade:
            old = self.renderer.name
            if self.renderer.degrade():
                msg = f"the {old} renderer misses its deadlines; switched to {self.renderer.name}"
                self._emit(ErrorEvent(ErrorCode.DEGRADED, msg))

    def _finish(self) -> None:
        self._send(self.renderer.flush())
        self._set_finished()

    def _set_finished(self) -> None:
        self.finished.set()
        if self.on_finished is not None:
            self.on_finished()

    def _send(self, y: np.ndarray | None) -> None:
        if y is None or y.shape[-1] == 0:
            return
        payload = encode_audio(y, self.cfg.format)
        self._emit(pack_frame(Kind.AUDIO_OUT, self._seq_out, self.samples_out, payload))
        self._seq_out += 1
        self.samples_out += y.shape[-1]

    def fail(self, exc: BaseException) -> None:
        """The renderer raised: keep nothing more, tell the client, let the session close."""
        self.failed = exc
        self.closed = True
        self._pending.clear()
        self._pending_samples = 0
        self._gather, self._gathered = [], 0
        self._short.clear()
        self.jitter.reset()
        self._emit(ErrorEvent(ErrorCode.INTERNAL, f"audio renderer failed: {exc}"))
        self._set_finished()
        if self.on_failed is not None:
            self.on_failed()

    def stats(self) -> AudioStats:
        js = self.jitter.stats()
        with self._lock:
            rendered_s = self.samples_out / self.cfg.sample_rate
            return AudioStats(
                renderer=self.renderer.name,
                degraded=self.renderer.degraded,
                samples_in=self.samples_in,
                samples_out=self.samples_out,
                latency_ms=LatencySummary.of(self.latency_ms),
                rtf=round(self.render_s / rendered_s, 5) if rendered_s else None,
                deadline_misses=self.deadline_misses,
                backlog_ms=round(1000.0 * self._pending_samples / self.cfg.sample_rate, 1),
                packets=PacketStats(js.received, js.lost, js.late, js.duplicates, js.resyncs),
                engine=self.renderer.engine_stats(),
            )
