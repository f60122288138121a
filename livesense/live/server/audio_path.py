"""One session's audio path: packets -> jitter buffer -> typed pending frames -> renderer -> out.

Packets go through a :class:`JitterBuffer` (sequencing, gap concealment, resync) into a queue of
typed frames (received :class:`AudioChunk` s, :class:`PoseUpdate` s, a ``STOP``
:class:`Control`), which an :class:`~livesense.live.server.workers.AudioWorkers` thread renders
one packet per turn. A packet rendered later than its deadline (arrival + the audio it produced
+ one packet) counts as a miss; a session that keeps missing degrades through its renderer's
:class:`~livesense.models.binaural.FallbackRenderer` (crossfaded to the DSP renderer, nothing
lost) and says so in an ``error`` event and in ``stats``. Audio is never dropped: when the
queue is full the server stops reading the socket (TCP backpressure).

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
from livesense.live.server.protocol import (
    AudioStats,
    ErrorCode,
    ErrorEvent,
    Kind,
    Outbound,
    PacketStats,
    PoseMessage,
    ProtocolError,
    StartConfig,
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
        self._short: dict[int, int] = {}  # seq -> samples of packets shorter than a chunk
        self._next_seq: int | None = None
        self.samples_in = 0  # accepted (incl. concealed gaps), = next input pts
        self.samples_out = 0
        self.scheduled = False
        self.closed = False
        self.paused = False  # the server stopped reading the socket
        self.finished = threading.Event()  # set once the end marker was processed
        self.on_finished: Callable[[], None] | None = None  # called (worker thread) then
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
        n = x.shape[-1]
        if n > self.chunk:
            raise ProtocolError(
                ErrorCode.BAD_SIZE,
                f"audio packet of {n} samples; packets carry at most {self.chunk} samples",
            )
        errors: list[ErrorEvent] = []
        padded = x if n == self.chunk else np.pad(x, ((0, 0), (0, self.chunk - n)))
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
        lost_before = self.jitter.stats().lost
        while self.jitter.stats().buffered > 0:
            out = self.jitter.pop()
            if out is None:
                break
            s = self._next_seq
            self._next_seq = (s + 1) % 2**32
            m = self._short.pop(s, self.chunk)
            chunk = AudioChunk(out[:, :m], self.samples_in, self.cfg.sample_rate)
            self._pending.append(_Received(chunk, t_arrival))
            self.samples_in += m
        lost = self.jitter.stats().lost - lost_before
        if lost:
            errors.append(
                ErrorEvent(ErrorCode.SEQ_GAP, f"{lost} audio packet(s) missing; concealed")
            )
        return errors

    def push_pose(self, msg: PoseMessage) -> None:
        """Queue a pose update, effective from ``msg.pts`` (None: the next sample received)."""
        pts = self.samples_in if msg.pts is None else msg.pts
        speaker = None if msg.speaker is None else msg.speaker.values
        listener = None if msg.listener is None else msg.listener.values
        self._pending.append(PoseUpdate(pts, speaker, listener))

    def push_end(self) -> None:
        self._pending.append(Control(ControlKind.STOP))

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pending(self) -> int:
        return len(self._pending)

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
        if self.paused and len(self._pending) <= self.limits.max_pending // 2:
            self.paused = False
            self._on_drain()

    def _render(self, item: _Received) -> None:
        t0 = time.perf_counter()
        x = item.chunk.data
        y = self.renderer.step(x)
        t1 = time.perf_counter()
        self._send(y)
        done = time.perf_counter()
        # A miss: this packet waited and rendered for longer than the audio it produced (a
        # block renderer emits several packets' worth at once) plus one packet of slack.
        emitted = 0 if y is None else y.shape[-1]
        waited = done - item.arrival
        miss = waited > (max(x.shape[-1], emitted) + self.chunk) / self.cfg.sample_rate
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
        self.failed = exc
        self.closed = True
        self._pending.clear()
        self._emit(ErrorEvent(ErrorCode.INTERNAL, f"audio renderer failed: {exc}"))
        self._set_finished()

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
                backlog_ms=round(
                    1000.0 * len(self._pending) * self.chunk / self.cfg.sample_rate, 1
                ),
                packets=PacketStats(js.received, js.lost, js.late, js.duplicates, js.resyncs),
            )
