"""One live session's media paths, and the shared audio workers that drive them.

- **Audio path**: packets -> :class:`JitterBuffer` (sequencing, gap concealment, resync) ->
  a pending queue -> the session's renderer on an :class:`AudioWorkers` thread -> binaural
  frames out. Sessions are served round-robin one packet at a time, so a heavy session cannot
  starve the others. A packet rendered later than its deadline (arrival + one packet duration)
  counts as a miss; a neural session that keeps missing degrades to the DSP renderer (the
  floor) and says so in ``stats``. Audio is never dropped: when the pending queue is full the
  server stops reading the socket (TCP backpressure).
- **Video path**: JPEG frames -> a small latest-N :class:`FrameRing` (drop oldest, counted) ->
  decode + ``ReasonerHandle.submit_frame`` on a shared video thread pool, at most one job
  per session at a time, so a slow reasoner only drops its own session's frames.

Everything here is thread-safe towards the event loop; outputs leave through ``emit``
(called from worker threads; the server hands them to the loop).
"""

from __future__ import annotations

import io
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesense.buffers import Arrival, FrameRing, JitterBuffer
from livesense.live.engines import ReasonerHandle, RendererEngine, SessionRenderer
from livesense.live.server.protocol import (
    ErrorCode,
    Kind,
    PoseMessage,
    ProtocolError,
    StartConfig,
    encode_audio,
    error_message,
    pack_frame,
)
from livesense.streaming.frames import Question, TextEvent, VideoFrame

log = logging.getLogger(__name__)

Emit = Callable[[bytes | dict[str, Any]], None]
_session_ids = itertools.count(1)


@dataclass(frozen=True)
class SessionLimits:
    """Per-session bounds (see docs/protocol.md, "Limits")."""

    chunk_samples: int = 480  # 10 ms at 48 kHz: the audio packet size
    max_pending: int = 50  # packets awaiting the renderer before the socket is paused
    max_out_backlog_s: float = 10.0  # unsent output before the client counts as not reading
    max_frame_bytes: int = 2 * 1024 * 1024  # largest JPEG frame
    max_image_pixels: int = 4096 * 4096
    video_ring: int = 2  # frames waiting for the reasoner (older ones are dropped)
    ask_burst: int = 5  # questions allowed at once ...
    ask_rate: float = 1.0  # ... then this many per second
    miss_window: int = 50  # packets over which deadline misses are counted
    miss_degrade: int = 10  # misses within the window that make a neural session degrade


class AudioWorkers:
    """Threads that render sessions' pending audio, round-robin, one packet per turn."""

    def __init__(self, threads: int = 2):
        self._ready: deque[AudioPath] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._threads = [
            threading.Thread(target=self._run, name=f"audio-worker-{i}", daemon=True)
            for i in range(max(1, threads))
        ]
        for t in self._threads:
            t.start()

    def schedule(self, path: AudioPath) -> None:
        """Queue ``path`` for a turn unless it is already queued or being served."""
        with self._cond:
            if not path.scheduled and not path.closed:
                path.scheduled = True
                self._ready.append(path)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._ready and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                path = self._ready.popleft()
            try:
                path.process_one()
            except Exception as e:  # a renderer bug ends that session's audio, not the worker
                log.exception("audio worker: session %s failed", path.session_id)
                path.fail(e)
            with self._cond:
                if path.has_pending() and not path.closed:
                    self._ready.append(path)
                    self._cond.notify()
                else:
                    path.scheduled = False


class AudioPath:
    """Jitter buffer -> pending queue -> renderer -> binaural frames (see module docstring)."""

    def __init__(
        self,
        session_id: str,
        cfg: StartConfig,
        renderer: SessionRenderer,
        renderer_name: str,
        fallback: RendererEngine | None,
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
        self.renderer_name = renderer_name
        self._fallback = fallback
        self.degraded = False
        self.jitter = JitterBuffer(
            self.chunk, 1, target_delay=1, min_delay=1, max_delay=1, window=64, adaptive=False
        )
        self._pending: deque[tuple] = deque()
        self._short: dict[int, int] = {}  # seq -> samples of packets shorter than a chunk
        self._next_seq: int | None = None
        self.samples_in = 0  # accepted (incl. concealed gaps), = next input pts
        self.samples_out = 0
        self.speaker = cfg.speaker
        self.listener = cfg.listener
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

    def push_packet(self, seq: int, x: np.ndarray, t_arrival: float) -> list[dict[str, Any]]:
        """Accept a decoded packet (1, n); return error events for the client (if any)."""
        n = x.shape[-1]
        if n > self.chunk:
            raise ProtocolError(
                ErrorCode.BAD_SIZE,
                f"audio packet of {n} samples; packets carry at most {self.chunk} samples",
            )
        errors: list[dict[str, Any]] = []
        padded = x if n == self.chunk else np.pad(x, ((0, 0), (0, self.chunk - n)))
        arrival = self.jitter.push(seq, padded)
        if arrival in (Arrival.LATE, Arrival.DUPLICATE):
            return [
                error_message(
                    ErrorCode.OUT_OF_ORDER, f"audio packet seq {seq} is {arrival.value}; dropped"
                )
            ]
        if arrival is Arrival.RESYNC:
            self._short.clear()
            self._next_seq = seq
            errors.append(
                error_message(ErrorCode.SEQ_GAP, f"audio seq jumped to {seq}; stream resynced")
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
            self._pending.append(("audio", self.samples_in, out[0, :m], t_arrival))
            self.samples_in += m
        lost = self.jitter.stats().lost - lost_before
        if lost:
            errors.append(
                error_message(ErrorCode.SEQ_GAP, f"{lost} audio packet(s) missing; concealed")
            )
        return errors

    def push_pose(self, msg: PoseMessage) -> None:
        self._pending.append(("pose", msg))

    def push_end(self) -> None:
        self._pending.append(("end",))

    def has_pending(self) -> bool:
        return bool(self._pending)

    def pending(self) -> int:
        return len(self._pending)

    # -- worker side --------------------------------------------------------------------------

    def process_one(self) -> None:
        """Apply queued poses, then render one audio packet (or the end marker)."""
        while self._pending:
            item = self._pending.popleft()
            if item[0] == "pose":
                self._apply_pose(item[1])
                continue
            if item[0] == "audio":
                self._render(item[1], item[2], item[3])
            else:
                self._finish()
            break
        if self.paused and len(self._pending) <= self.limits.max_pending // 2:
            self.paused = False
            self._on_drain()

    def _apply_pose(self, msg: PoseMessage) -> None:
        at = msg.pts
        if msg.speaker is not None:
            self.speaker = msg.speaker
            self.renderer.set_speaker_pose(msg.speaker, at)
        if msg.listener is not None:
            self.listener = msg.listener
            self.renderer.set_listener_pose(msg.listener, at)

    def _render(self, pts: int, x: np.ndarray, t_arrival: float) -> None:
        t0 = time.perf_counter()
        y = self.renderer.step(x)
        t1 = time.perf_counter()
        self._send(y)
        done = time.perf_counter()
        # A miss: this packet waited and rendered for longer than the audio it produced (a
        # block renderer emits several packets' worth at once) plus one packet of slack.
        emitted = 0 if y is None else y.shape[-1]
        miss = done - t_arrival > (max(x.shape[-1], emitted) + self.chunk) / self.cfg.sample_rate
        with self._lock:
            self.render_s += t1 - t0
            self.latency_ms.append((done - t_arrival) * 1000.0)
            self.deadline_misses += miss
            self._recent_miss.append(miss)
            degrade = (
                not self.degraded
                and self._fallback is not None
                and sum(self._recent_miss) >= self.limits.miss_degrade
            )
        if degrade:
            self._degrade()

    def _degrade(self) -> None:
        """Switch to the DSP renderer (the floor) from the next packet on."""
        assert self._fallback is not None
        held = self.renderer.flush()  # what the old renderer still holds, so no sample is lost
        self._send(held)
        old = self.renderer_name
        self.renderer = self._fallback.create(self.speaker, self.listener, self.cfg.sample_rate)
        pad = self.samples_in - self.samples_out - self._pending_samples()
        self.renderer_name = self._fallback.name
        self.degraded = True
        if pad > 0:  # keep the input/output sample alignment
            self._send(np.zeros((2, pad), np.float32))
        self._emit(
            error_message(
                ErrorCode.DEGRADED,
                f"the {old} renderer misses its deadlines; switched to {self.renderer_name}",
            )
        )

    def _pending_samples(self) -> int:
        return sum(it[2].shape[-1] for it in list(self._pending) if it[0] == "audio")

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
        y = np.asarray(y, dtype=np.float32)
        frame = pack_frame(
            Kind.AUDIO_OUT, self._seq_out, self.samples_out, encode_audio(y, self.cfg.format)
        )
        self._seq_out += 1
        self.samples_out += y.shape[-1]
        self._emit(frame)

    def fail(self, exc: BaseException) -> None:
        self.failed = exc
        self.closed = True
        self._pending.clear()
        self._emit(error_message(ErrorCode.INTERNAL, f"audio renderer failed: {exc}"))
        self._set_finished()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            lat = np.array(self.latency_ms) if self.latency_ms else None
            rendered_s = self.samples_out / self.cfg.sample_rate
            out = {
                "renderer": self.renderer_name,
                "degraded": self.degraded,
                "samples_in": self.samples_in,
                "samples_out": self.samples_out,
                "latency_ms": None
                if lat is None
                else {
                    "p50": round(float(np.percentile(lat, 50)), 3),
                    "p99": round(float(np.percentile(lat, 99)), 3),
                    "max": round(float(lat.max()), 3),
                },
                "rtf": round(self.render_s / rendered_s, 5) if rendered_s else None,
                "deadline_misses": self.deadline_misses,
                "backlog_ms": round(
                    1000.0 * len(self._pending) * self.chunk / self.cfg.sample_rate, 1
                ),
            }
        js = self.jitter.stats()
        out["packets"] = {"received": js.received, "lost": js.lost, "late": js.late,
                          "duplicates": js.duplicates, "resyncs": js.resyncs}  # fmt: skip
        return out


class VideoPath:
    """JPEG frames -> latest-N ring -> decode + reasoner on the shared video pool."""

    def __init__(
        self,
        handle: ReasonerHandle,
        pool: ThreadPoolExecutor,
        limits: SessionLimits,
        emit: Emit,
    ):
        self.handle = handle
        self._pool = pool
        self.limits = limits
        self._emit = emit
        self.ring: FrameRing[bytes] = FrameRing(limits.video_ring)
        self._lock = threading.Lock()
        self._in_flight = False
        self.closed = False
        self.frames_received = 0
        self.frames_processed = 0
        self.bad_frames = 0
        self._index = 0

    def push_frame(self, jpeg: bytes, pts_us: int) -> None:
        """Queue a frame (event loop); raises ProtocolError for an out-of-order pts."""
        if len(jpeg) > self.limits.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"video frame of {len(jpeg)} bytes exceeds {self.limits.max_frame_bytes}",
            )
        if not jpeg:
            raise ProtocolError(ErrorCode.BAD_SIZE, "empty video frame")
        self.frames_received += 1
        if not self.ring.push(jpeg, pts_us / 1e6):
            raise ProtocolError(
                ErrorCode.OUT_OF_ORDER, f"video frame pts {pts_us} us goes backwards; dropped"
            )
        with self._lock:
            if self._in_flight or self.closed:
                return
            self._in_flight = True
        self._pool.submit(self._drain)

    def _drain(self) -> None:
        from PIL import Image

        while True:
            with self._lock:
                item = None if self.closed else self.ring.pop_latest(drop_older=True)
                if item is None:
                    self._in_flight = False
                    return
            jpeg, pts = item
            try:
                with Image.open(io.BytesIO(jpeg)) as im:
                    if im.width * im.height > self.limits.max_image_pixels:
                        raise ValueError(f"image of {im.width}x{im.height} pixels is too large")
                    img = np.asarray(im.convert("RGB"))
            except Exception as e:
                self.bad_frames += 1
                self._emit(error_message(ErrorCode.BAD_IMAGE, f"cannot decode video frame: {e}"))
                continue
            try:
                self.handle.submit_frame(VideoFrame(img, pts, self._index))
            except Exception as e:
                log.exception("reasoner failed")
                self._emit(error_message(ErrorCode.REASONER_FAILED, f"video reasoner: {e}"))
            self._index += 1
            self.frames_processed += 1

    def ask(self, q: Question) -> None:
        self._pool.submit(self._ask, q)

    def _ask(self, q: Question) -> None:
        try:
            self.handle.ask(q)
        except Exception as e:
            self._emit(error_message(ErrorCode.REASONER_FAILED, f"video reasoner: {e}"))

    def stop(self) -> None:
        with self._lock:
            self.closed = True

    def stats(self) -> dict[str, Any]:
        rs = self.ring.stats()
        return {
            "frames_received": self.frames_received,
            "frames_processed": self.frames_processed,
            "frames_dropped": rs.dropped + rs.skipped,
            "frames_late": rs.late,
            "bad_frames": self.bad_frames,
            "evaluations": int(getattr(self.handle, "evaluations", 0) or 0),
        }


def text_event_json(ev: TextEvent) -> dict[str, Any]:
    """A reasoner event as a protocol message (``note`` / ``answer``)."""
    return ev.to_json()


def new_session_id() -> str:
    return f"s{next(_session_ids)}-{int(time.time() * 1000) % 100000:05d}"
