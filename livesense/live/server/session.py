"""One live session: a connection after a valid ``start``, wired to its audio and video paths.

Per connection: a receive loop (validates, feeds the paths), a sender task (drains one
outgoing queue of binary frames and :data:`~livesense.live.server.protocol.Outbound`
messages), a stats task. Worker threads hand their output to the event loop through
:meth:`LiveSession.emit`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from livesense.live.engines import Engines, ReasonerHandle
from livesense.live.server.audio_path import AudioPath
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import (
    AskMessage,
    Done,
    ErrorCode,
    ErrorEvent,
    Kind,
    Outbound,
    PoseMessage,
    ProtocolError,
    Ready,
    StartConfig,
    Stats,
    decode_audio,
    parse_control,
    parse_json,
    to_wire,
    unpack_frame,
)
from livesense.live.server.video_path import VideoPath
from livesense.live.server.workers import AudioWorkers
from livesense.streaming.frames import Question

__all__ = ["CLOSE_ERROR", "CLOSE_POLICY", "CLOSE_TRY_AGAIN", "LiveSession", "new_session_id"]

log = logging.getLogger(__name__)

CLOSE_TRY_AGAIN = 1013
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011
_session_ids = itertools.count(1)


def new_session_id() -> str:
    return f"s{next(_session_ids)}-{int(time.time() * 1000) % 100000:05d}"


class SessionHost(Protocol):
    """What a session uses of its server (:class:`~livesense.live.server.app.LiveServer`)."""

    config: ServerConfig
    engines: Engines
    audio_workers: AudioWorkers | None
    video_pool: ThreadPoolExecutor | None


class _Closing(Exception):
    """Ends a session's receive loop with a close code and reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LiveSession:
    """One connection after a valid ``start``: wires the socket to the audio/video paths."""

    def __init__(self, server: SessionHost, ws: ServerConnection, cfg: StartConfig):
        self.server = server
        self.ws = ws
        self.cfg = cfg
        self.id = new_session_id()
        self.limits = server.config.limits
        self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()
        self._out: asyncio.Queue[bytes | Outbound | None] = asyncio.Queue()
        self._out_samples = 0  # audio samples queued but not yet sent
        self._closed = False
        self._resume = asyncio.Event()
        self._audio_done = asyncio.Event()
        self._errors = 0
        self._ask_tokens = float(self.limits.ask_burst)
        self._ask_t = time.monotonic()
        self._video_off_told = False
        self._asks = 0
        self.audio: AudioPath | None = None
        self.video: VideoPath | None = None
        self.handle: ReasonerHandle | None = None

    # thread-safe outputs ----------------------------------------------------------------------

    def emit(self, item: bytes | Outbound) -> None:
        """Queue an outgoing message from any thread (dropped once the loop is gone)."""
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the server is shutting down
            self.loop.call_soon_threadsafe(self._enqueue, item)

    def _threadsafe(self, fn: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn)

    def _enqueue(self, item: bytes | Outbound) -> None:
        if self._closed:
            return
        if isinstance(item, bytes):
            self._out_samples += self._frame_samples(item)
            backlog_s = self._out_samples / self.cfg.sample_rate
            if backlog_s > self.limits.max_out_backlog_s:
                self._closed = True
                self._out.put_nowait(None)
                self.loop.create_task(self._abort_not_reading())
                return
        elif isinstance(item, ErrorEvent):
            self._errors += 1
        self._out.put_nowait(item)

    def _frame_samples(self, frame: bytes) -> int:
        width = 2 if self.cfg.format == "s16le" else 4
        return (len(frame) - 16) // (2 * width)

    async def _abort_not_reading(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(CLOSE_POLICY, "client is not reading; output backlog too large"), 2.0
            )
        self.ws.transport.abort()

    # main ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        srv, cfg = self.server, self.cfg
        warnings: list[ErrorEvent] = []
        engine = srv.engines.renderer(cfg.renderer)
        if engine is None:
            engine = srv.engines.dsp
            warnings.append(
                ErrorEvent(
                    ErrorCode.RENDERER_UNAVAILABLE,
                    f"the {cfg.renderer} renderer is not available here; using dsp",
                )
            )
        renderer = await self.loop.run_in_executor(
            None, engine.create, cfg.speaker, cfg.listener, cfg.sample_rate
        )
        self.audio = AudioPath(
            self.id, cfg, renderer, self.limits, self.emit,
            lambda: self._threadsafe(self._resume.set),
        )  # fmt: skip
        self.audio.on_finished = lambda: self._threadsafe(self._audio_done.set)
        reasoner = srv.engines.reasoner
        if cfg.video or cfg.reasoning:
            self.handle = await self.loop.run_in_executor(None, reasoner.open_session, self.emit)
            assert srv.video_pool is not None
            self.video = VideoPath(self.handle, srv.video_pool, self.limits, self.emit)
        ready = Ready(
            session=self.id,
            chunk_samples=self.limits.chunk_samples,
            latency_ms=round(1000.0 * renderer.latency / cfg.sample_rate, 3),
            sample_rate=cfg.sample_rate,
            format=cfg.format,
            renderer=renderer.name,
            reasoner=reasoner.name if self.video else None,
        )
        await self.ws.send(to_wire(ready))
        for w in warnings:
            self.emit(w)
        sender = asyncio.create_task(self._sender())
        stats = asyncio.create_task(self._stats_loop())
        close_code, reason = 1000, "done"
        try:
            try:
                await self._receive()
                await self._finish()
            except _Closing as c:
                close_code, reason = c.code, c.reason
            self._out.put_nowait(None)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(sender), 10.0)
            await self.ws.close(close_code, reason)
        finally:
            stats.cancel()
            sender.cancel()

    async def _receive(self) -> None:
        cfg = self.server.config
        deadline = self.t0 + cfg.max_session_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self._tell(ErrorCode.TIME_LIMIT, f"session time limit of {cfg.max_session_s} s")
                raise _Closing(CLOSE_POLICY, "session time limit")
            try:
                msg = await asyncio.wait_for(self.ws.recv(), min(cfg.idle_timeout_s, left))
            except asyncio.TimeoutError:
                if time.monotonic() >= deadline:
                    continue
                self._tell(ErrorCode.IDLE_TIMEOUT, f"nothing received for {cfg.idle_timeout_s} s")
                raise _Closing(CLOSE_POLICY, "idle timeout") from None
            if self._closed:
                raise _Closing(CLOSE_POLICY, "client is not reading")
            try:
                if isinstance(msg, str):
                    if self._on_text(msg):
                        return
                else:
                    await self._on_binary(msg)
            except ProtocolError as e:
                self._tell(e.code, str(e))
            if self._errors >= cfg.max_errors:
                raise _Closing(CLOSE_POLICY, "too many protocol errors")

    def _tell(self, code: ErrorCode, message: str) -> None:
        self._enqueue(ErrorEvent(code, message))

    def _on_text(self, text: str) -> bool:
        msg = parse_control(parse_json(text, self.server.config.max_text_bytes))
        assert self.audio is not None and self.server.audio_workers is not None
        if msg == "stop":
            return True
        if isinstance(msg, PoseMessage):
            self.audio.push_pose(msg)
            self.server.audio_workers.schedule(self.audio)
        elif isinstance(msg, AskMessage):
            now = time.monotonic()
            rate, burst = self.limits.ask_rate, self.limits.ask_burst
            self._ask_tokens = min(burst, self._ask_tokens + (now - self._ask_t) * rate)
            self._ask_t = now
            if self._ask_tokens < 1.0:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many questions; slow down")
            self._ask_tokens -= 1.0
            if self.video is None:
                raise ProtocolError(
                    ErrorCode.REASONING_DISABLED, "reasoning and video are disabled in this session"
                )
            self._asks += 1
            pts = max(self.video.ring.last_pts, self.audio.samples_in / self.cfg.sample_rate)
            self.video.ask(Question(msg.text, pts, msg.id or f"q{self._asks}"))
        return False

    async def _on_binary(self, data: bytes) -> None:
        f = unpack_frame(data)
        assert self.audio is not None and self.server.audio_workers is not None
        if f.kind == Kind.AUDIO_IN:
            x = decode_audio(f.payload, self.cfg.format, 1)
            for err in self.audio.push_packet(f.seq, x, time.perf_counter()):
                self._enqueue(err)
            self.server.audio_workers.schedule(self.audio)
            await self._backpressure()
        elif f.kind == Kind.VIDEO_IN:
            if self.video is None or not self.cfg.video:
                if not self._video_off_told:
                    self._video_off_told = True
                    raise ProtocolError(
                        ErrorCode.VIDEO_DISABLED, "video is disabled in this session; dropped"
                    )
                return
            self.video.push_frame(bytes(f.payload), f.pts)
        else:
            raise ProtocolError(
                ErrorCode.UNKNOWN_KIND, f"kind {f.kind} is server-to-client only; dropped"
            )

    async def _backpressure(self) -> None:
        """Stop reading the socket while too much audio awaits the renderer."""
        a = self.audio
        assert a is not None
        if a.pending() <= self.limits.max_pending:
            return
        self._resume.clear()
        a.paused = True
        while a.pending() > self.limits.max_pending // 2 and not a.closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._resume.wait(), 0.5)
            self._resume.clear()
        a.paused = False

    async def _finish(self) -> None:
        """After ``stop``: render everything received, finish the reasoner, send done."""
        a, workers = self.audio, self.server.audio_workers
        assert a is not None and workers is not None
        a.push_end()
        workers.schedule(a)
        while not a.finished.is_set():  # the worker sets it; poll cheaply, never block the loop
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._audio_done.wait(), 0.05)
        if self.video is not None:
            self.video.stop()
            h, self.handle = self.handle, None
            if h is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(
                        self.loop.run_in_executor(None, h.close),
                        self.server.config.finish_timeout_s,
                    )
        await asyncio.sleep(0)  # let events queued by the workers land before ``done``
        self._enqueue(self.stats())
        self._enqueue(Done(a.samples_in, a.samples_out))

    async def _sender(self) -> None:
        while True:
            item = await self._out.get()
            if item is None:
                return
            try:
                if isinstance(item, bytes):
                    await self.ws.send(item)
                    self._out_samples -= self._frame_samples(item)
                else:
                    await self.ws.send(to_wire(item))
            except ConnectionClosed:
                return

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.server.config.stats_interval_s)
            self._enqueue(self.stats())

    def stats(self) -> Stats:
        assert self.audio is not None
        return Stats(
            session=self.id,
            elapsed_s=round(time.monotonic() - self.t0, 3),
            out_backlog_ms=round(1000.0 * self._out_samples / self.cfg.sample_rate, 1),
            errors=self._errors,
            audio=self.audio.stats(),
            video=self.video.stats() if self.video is not None else None,
        )

    def release(self) -> None:
        """Free everything now (normal end or a vanished client)."""
        self._closed = True
        if self.audio is not None:
            self.audio.closed = True
        if self.video is not None:
            self.video.stop()
        h, self.handle = self.handle, None
        if h is not None:  # finish/close off the loop; nobody waits for it
            threading.Thread(target=_quiet_close, args=(h,), daemon=True).start()


def _quiet_close(handle: ReasonerHandle) -> None:
    try:
        handle.close()
    except Exception:
        log.exception("reasoner close failed")
