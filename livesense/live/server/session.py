"""One live session: a connection after a valid ``start``, wired to its audio and video paths.

Per connection: a receive loop (validates, feeds the paths), a sender task (drains one
outgoing queue of binary frames and :data:`~livesense.live.server.events.Outbound`
messages), a stats task. Worker threads hand their output to the event loop through
:meth:`LiveSession.emit`.

A session ends in one of three ways, each with its close code (docs/protocol.md): the client's
``stop`` or the server's :meth:`LiveSession.drain` (everything received is rendered and sent,
then ``stats`` + ``done``; 1000 / 1001), a rule or limit broken (an ``error`` event, 1008), or a
server-side failure (an ``internal`` error event, 1011). :meth:`LiveSession.run` returns the
code and reason; the server frees the slot before it waits for the client's close frame.
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
from dataclasses import replace
from typing import Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from livesense.live.engines import Engines, ReasonerHandle
from livesense.live.server.audio_path import AudioPath
from livesense.live.server.config import ServerConfig
from livesense.live.server.events import (
    CLOSE_ERROR,
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY,
    Done,
    ErrorEvent,
    Outbound,
    Ready,
    Stats,
    VideoStats,
    to_wire,
)
from livesense.live.server.protocol import (
    AskMessage,
    ErrorCode,
    Kind,
    PoseMessage,
    ProtocolError,
    StartConfig,
    decode_audio,
    parse_control,
    parse_json,
    unpack_frame,
)
from livesense.live.server.ratelimit import TokenBucket
from livesense.live.server.video_path import VideoPath
from livesense.live.server.workers import AudioWorkers
from livesense.streaming.frames import Question

__all__ = ["LiveSession", "new_session_id"]

log = logging.getLogger(__name__)

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
        self._asks_allowed = TokenBucket(self.limits.ask_burst, self.limits.ask_rate)
        self._poses_allowed = TokenBucket(self.limits.pose_burst, self.limits.pose_rate)
        self._video_off_told = False
        self._video_ignored = 0  # frames received while video is disabled
        self._asks = 0
        self._receiving: asyncio.Task[None] | None = None
        self._interrupt: _Closing | None = None  # why the receive loop was cancelled
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
        """The output backlog passed its limit: an error event and a close go out behind it
        (a client that reads again sees both), then the connection is dropped."""
        why = f"client is not reading; over {self.limits.max_out_backlog_s:g} s of output unsent"
        with contextlib.suppress(Exception):
            event = ErrorEvent(ErrorCode.CLIENT_NOT_READING, why)
            await asyncio.wait_for(self.ws.send(to_wire(event)), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self.ws.close(CLOSE_POLICY, "client is not reading; output backlog too large"), 2.0
            )
        self.ws.transport.abort()

    # main ---------------------------------------------------------------------------------------

    async def run(self) -> tuple[int, str]:
        """Serve the session until it ends; return the close code and reason (the caller
        closes the socket once it freed the slot)."""
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
        if renderer.name != engine.name:  # the engine had no room (every slot taken)
            warnings.append(
                ErrorEvent(
                    ErrorCode.RENDERER_UNAVAILABLE,
                    f"the {engine.name} renderer is full; using {renderer.name}",
                )
            )
        self.audio = AudioPath(
            self.id, cfg, renderer, self.limits, self.emit,
            lambda: self._threadsafe(self._resume.set),
        )  # fmt: skip
        self.audio.on_finished = lambda: self._threadsafe(self._audio_done.set)
        self.audio.on_failed = lambda: self._threadsafe(self._failed)
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
        end = _Closing(CLOSE_NORMAL, "done")
        try:
            try:
                self._receiving = asyncio.create_task(self._receive())
                if self._interrupt is not None:  # stopped while the session was being set up
                    self._receiving.cancel()
                try:
                    await self._receiving
                except asyncio.CancelledError:
                    if self._interrupt is None:  # the server itself is being cancelled
                        raise
                    end = self._interrupt
                    if end.code not in (CLOSE_NORMAL, CLOSE_GOING_AWAY):
                        raise end from None
                await self._finish()
            except _Closing as c:
                end = c
            self._out.put_nowait(None)
            await self._flush(sender)
            return end.code, end.reason
        finally:
            stats.cancel()
            sender.cancel()

    def stop(self, code: int, reason: str) -> None:
        """End the session from the event loop: ``CLOSE_NORMAL``/``CLOSE_GOING_AWAY`` finish
        it (render what was received, ``done``), any other code closes it at once."""
        if self._interrupt is not None:
            return
        self._interrupt = _Closing(code, reason)
        if self._receiving is not None and not self._receiving.done():
            self._receiving.cancel()

    def drain(self) -> None:
        """The server shuts down: finish like ``stop`` (``done``), then close with 1001."""
        self.stop(CLOSE_GOING_AWAY, "server shutting down")

    def _failed(self) -> None:  # the audio path failed (its error event is already queued)
        self.stop(CLOSE_ERROR, "audio renderer failed")

    async def _flush(self, sender: asyncio.Task[None]) -> None:
        """Wait for the sender to send everything queued, as long as it makes progress."""
        cfg = self.server.config
        last, still = self._out.qsize(), 0.0
        while not sender.done():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.shield(sender), 0.5)
            size = self._out.qsize()
            still = still + 0.5 if size >= last else 0.0
            last = size
            if still >= cfg.stall_timeout_s:
                log.warning("session %s: output stalled; %d messages not sent", self.id, size)
                return

    async def _receive(self) -> None:
        cfg = self.server.config
        deadline = self.t0 + cfg.max_session_s
        while True:
            if self._interrupt is not None:  # 3.11's wait_for can swallow a cancellation
                raise asyncio.CancelledError
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
            except Exception:  # a bug in validation: the client still only gets an error
                log.exception("session %s: unexpected error handling a message", self.id)
                self._tell(ErrorCode.BAD_MESSAGE, "the server could not handle this message")
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
            if not self._poses_allowed.take():
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many pose updates; dropped")
            self.audio.push_pose(msg)
            self.server.audio_workers.schedule(self.audio)
        elif isinstance(msg, AskMessage):
            if not self._asks_allowed.take():
                raise ProtocolError(ErrorCode.RATE_LIMITED, "too many questions; slow down")
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
            if self.audio.has_pending():  # short packets may still be gathering
                self.server.audio_workers.schedule(self.audio)
            await self._backpressure()
        elif f.kind == Kind.VIDEO_IN:
            if self.video is None or not self.cfg.video:
                self._video_ignored += 1
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
            if self._interrupt is not None:
                raise asyncio.CancelledError
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
        if a.failed is not None:  # its ``internal`` error event is queued
            raise _Closing(CLOSE_ERROR, "audio renderer failed")
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
            video=self._video_stats(),
        )

    def _video_stats(self) -> VideoStats | None:
        n = self._video_ignored  # frames that came while video is disabled: dropped, counted
        if self.video is not None:
            v = self.video.stats()
            if not n:
                return v
            return replace(
                v, frames_received=v.frames_received + n, frames_dropped=v.frames_dropped + n
            )
        return VideoStats(n, 0, n, 0, 0, 0) if n else None

    def release(self) -> None:
        """Free everything now (normal end or a vanished client)."""
        self._closed = True
        if self.audio is not None:
            self.audio.closed = True
            self.audio.renderer.close()  # frees a shared engine slot now
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
