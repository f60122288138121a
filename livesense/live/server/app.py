"""The live-session websocket server (``livesense serve``); protocol in docs/protocol.md.

asyncio does I/O only. Per connection: a receive loop (validates, feeds the session's audio
and video paths), a sender task (drains one outgoing queue), a stats task. Rendering runs on
shared :class:`AudioWorkers` threads, JPEG decoding and the reasoner on a shared video pool.
One renderer engine (HRIR set / neural model) and one reasoner engine per process.

HTTP on the same port: ``/`` serves the browser client (``livesense/live/server/web/``), ``/healthz``
reports the session count, and ``/v1/session`` upgrades to a websocket after the token
(``?token=``, constant-time compare; HTTP 401) and the Origin allowlist (HTTP 403) pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import json
import logging
import mimetypes
import secrets
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from livesense.errors import ConfigError, LivesenseError
from livesense.live import engines
from livesense.live.engines import ReasonerEngine, RendererEngine
from livesense.live.server.protocol import (
    PATH,
    PROTOCOL_VERSION,
    AskMessage,
    ErrorCode,
    Kind,
    PoseMessage,
    ProtocolError,
    StartConfig,
    decode_audio,
    error_message,
    parse_control,
    parse_json,
    parse_start,
    unpack_frame,
)
from livesense.live.server.session import (
    AudioPath,
    AudioWorkers,
    SessionLimits,
    VideoPath,
    new_session_id,
)
from livesense.streaming.frames import Question

__all__ = ["LiveServer", "ServerConfig", "ServerThread", "add_serve_parser", "cmd_serve"]

log = logging.getLogger(__name__)

WEB_ROOT = Path(__file__).resolve().parent / "web"
CLOSE_TRY_AGAIN = 1013
CLOSE_POLICY = 1008
CLOSE_ERROR = 1011


@dataclass(frozen=True)
class ServerConfig:
    """Settings of :class:`LiveServer`. ``token=None`` disables auth (``--no-auth``)."""

    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    max_sessions: int = 8
    renderer: str = "dsp"  # default when ``start`` names none
    vlm: str = "none"
    allow_origins: tuple[str, ...] = ()  # added to the same-host defaults
    max_message_bytes: int = 4 * 1024 * 1024  # websocket hard limit (closes with 1009)
    max_text_bytes: int = 64 * 1024
    start_timeout_s: float = 10.0
    idle_timeout_s: float = 30.0
    max_session_s: float = 4 * 3600.0
    stats_interval_s: float = 1.0
    finish_timeout_s: float = 10.0  # reasoner finishing after ``stop``
    max_errors: int = 200  # error events before a session is closed with 1008
    audio_threads: int = 2
    video_threads: int = 4
    limits: SessionLimits = field(default_factory=SessionLimits)
    web_root: Path = WEB_ROOT


class LiveServer:
    """Websocket + static HTTP server for live sessions (see module docstring)."""

    def __init__(
        self,
        config: ServerConfig,
        reasoner: ReasonerEngine | None = None,
        renderer: RendererEngine | None = None,
    ):
        self.config = config
        self.dsp: RendererEngine = engines.get_renderer("dsp")  # type: ignore[assignment]
        self._renderer_override = renderer
        self.reasoner = reasoner if reasoner is not None else engines.get_reasoner(config.vlm)
        self.audio_workers: AudioWorkers | None = None
        self.video_pool: ThreadPoolExecutor | None = None
        self.sessions: dict[str, LiveSession] = {}
        self._slots = 0
        self._server: Server | None = None
        self.port = config.port
        self.started = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start the workers."""
        self.audio_workers = AudioWorkers(self.config.audio_threads)
        self.video_pool = ThreadPoolExecutor(self.config.video_threads, "video-worker")
        self._server = await serve(
            self._handler,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_message_bytes,
            max_queue=32,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop accepting, close every session, stop the workers."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5.0)
        if self.audio_workers is not None:
            self.audio_workers.close()
        if self.video_pool is not None:
            self.video_pool.shutdown(wait=False, cancel_futures=True)

    async def serve_forever(self) -> None:
        await self.start()
        try:
            await asyncio.Future()
        finally:
            await self.close()

    def renderer_engine(self, name: str) -> RendererEngine | None:
        """The engine for a session asking for ``name`` (None: unavailable)."""
        if name == "dsp":
            return self.dsp
        if self._renderer_override is not None and self._renderer_override.name == name:
            return self._renderer_override
        try:
            return engines.get_renderer(name)
        except Exception as e:  # a factory that cannot build its model
            log.warning("renderer %r unavailable: %s", name, e)
            return None

    # -- HTTP ---------------------------------------------------------------------------------

    def allowed_origins(self) -> set[str]:
        port = self.port
        hosts = {self.config.host, "localhost", "127.0.0.1", "[::1]"}
        out = {f"{scheme}://{h}:{port}" for h in hosts for scheme in ("http", "https")}
        return out | set(self.config.allow_origins)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        if url.path == PATH:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in self.allowed_origins():
                return _response(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed\n")
            if self.config.token is not None:
                token = parse_qs(url.query).get("token", [""])[0]
                if not hmac.compare_digest(token.encode(), self.config.token.encode()):
                    return _response(HTTPStatus.UNAUTHORIZED, "missing or invalid token\n")
            return None
        if url.path == "/healthz":
            body = {"ok": True, "sessions": len(self.sessions), "max_sessions":
                    self.config.max_sessions, "protocol": PROTOCOL_VERSION}  # fmt: skip
            return _response(HTTPStatus.OK, json.dumps(body), "application/json")
        return self._static(url.path)

    def _static(self, path: str) -> Response:
        name = "index.html" if path in ("/", "") else path.lstrip("/")
        root = self.config.web_root
        # Only plain files directly in the web folder: no traversal, no dot files.
        if "/" in name or "\\" in name or name.startswith(".") or not (root / name).is_file():
            return _response(HTTPStatus.NOT_FOUND, "not found\n")
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if name.endswith(".js"):
            ctype = "text/javascript"
        return _response(HTTPStatus.OK, (root / name).read_bytes(), ctype)

    # -- websocket ----------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        if self._slots >= self.config.max_sessions:
            await ws.close(
                CLOSE_TRY_AGAIN, f"server full: {self.config.max_sessions} sessions; try later"
            )
            return
        self._slots += 1  # reserved before any await, so concurrent handshakes cannot overbook
        session: LiveSession | None = None
        try:
            cfg = await self._read_start(ws)
            if cfg is None:
                return
            session = LiveSession(self, ws, cfg)
            self.sessions[session.id] = session
            await session.run()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session failed")
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_ERROR, "internal error")
        finally:
            if session is not None:
                session.release()
                self.sessions.pop(session.id, None)
            self._slots -= 1

    async def _read_start(self, ws: ServerConnection) -> StartConfig | None:
        try:
            msg = await asyncio.wait_for(ws.recv(), self.config.start_timeout_s)
        except asyncio.TimeoutError:
            await _reject(ws, ErrorCode.START_TIMEOUT, "no start message")
            return None
        try:
            if not isinstance(msg, str):
                raise ProtocolError(
                    ErrorCode.NOT_STARTED, 'the first message must be the JSON "start" message'
                )
            return parse_start(parse_json(msg, self.config.max_text_bytes), self.config.renderer)
        except ProtocolError as e:
            await _reject(ws, e.code, str(e))
            return None


def _response(status: HTTPStatus, body: str | bytes, ctype: str = "text/plain") -> Response:
    data = body.encode() if isinstance(body, str) else body
    if ctype.startswith("text/") or ctype == "application/json":
        ctype += "; charset=utf-8"
    headers = Headers(
        [
            ("Content-Type", ctype),
            ("Content-Length", str(len(data))),
            ("Cache-Control", "no-store"),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)


async def _reject(ws: ServerConnection, code: ErrorCode, message: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(json.dumps(error_message(code, message)))
        await ws.close(CLOSE_POLICY, message[:120])


class _Closing(Exception):
    """Ends a session's receive loop with a close code and reason."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


class LiveSession:
    """One connection after a valid ``start``: wires the socket to the audio/video paths."""

    def __init__(self, server: LiveServer, ws: ServerConnection, cfg: StartConfig):
        self.server = server
        self.ws = ws
        self.cfg = cfg
        self.id = new_session_id()
        self.limits = server.config.limits
        self.loop = asyncio.get_running_loop()
        self.t0 = time.monotonic()
        self._out: asyncio.Queue[bytes | dict[str, Any] | None] = asyncio.Queue()
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
        self.handle: Any = None

    # thread-safe outputs ----------------------------------------------------------------------

    def emit(self, item: bytes | dict[str, Any]) -> None:
        """Queue an outgoing message from any thread (dropped once the loop is gone)."""
        if self._closed:
            return
        with contextlib.suppress(RuntimeError):  # the server is shutting down
            self.loop.call_soon_threadsafe(self._enqueue, item)

    def _threadsafe(self, fn: Any) -> None:
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(fn)

    def _enqueue(self, item: bytes | dict[str, Any]) -> None:
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
        elif item.get("type") == "error":
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
        warnings: list[dict[str, Any]] = []
        engine = srv.renderer_engine(cfg.renderer)
        name = cfg.renderer
        if engine is None:
            engine, name = srv.dsp, "dsp"
            warnings.append(
                error_message(
                    ErrorCode.RENDERER_UNAVAILABLE,
                    f"the {cfg.renderer} renderer is not available here; using dsp",
                )
            )
        renderer = await self.loop.run_in_executor(
            None, engine.create, cfg.speaker, cfg.listener, cfg.sample_rate
        )
        self.audio = AudioPath(
            self.id, cfg, renderer, name, srv.dsp if name != "dsp" else None, self.limits,
            self.emit, lambda: self._threadsafe(self._resume.set),
        )  # fmt: skip
        self.audio.on_finished = lambda: self._threadsafe(self._audio_done.set)
        if cfg.video or cfg.reasoning:
            self.handle = await self.loop.run_in_executor(
                None, srv.reasoner.open_session, self._on_text_event
            )
            assert srv.video_pool is not None
            self.video = VideoPath(self.handle, srv.video_pool, self.limits, self.emit)
        await self.ws.send(
            json.dumps(
                {
                    "type": "ready",
                    "session": self.id,
                    "protocol": PROTOCOL_VERSION,
                    "chunk_samples": self.limits.chunk_samples,
                    "latency_ms": round(1000.0 * renderer.latency / cfg.sample_rate, 3),
                    "sample_rate": cfg.sample_rate,
                    "format": cfg.format,
                    "renderer": name,
                    "reasoner": srv.reasoner.name if self.video else None,
                }
            )
        )
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

    def _on_text_event(self, ev: Any) -> None:
        self.emit(ev.to_json())

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
        self._enqueue(error_message(code, message))

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
        self._enqueue({"type": "done", "samples_in": a.samples_in, "samples_out": a.samples_out})

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
                    await self.ws.send(json.dumps(item))
            except ConnectionClosed:
                return

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.server.config.stats_interval_s)
            self._enqueue(self.stats())

    def stats(self) -> dict[str, Any]:
        assert self.audio is not None
        a = self.audio.stats()
        v = self.video.stats() if self.video is not None else None
        return {
            "type": "stats",
            "session": self.id,
            "elapsed_s": round(time.monotonic() - self.t0, 3),
            "latency_ms": a["latency_ms"],
            "rtf": a["rtf"],
            "renderer": a["renderer"],
            "degraded": a["degraded"],
            "frames_dropped": v["frames_dropped"] if v else 0,
            "evaluations": v["evaluations"] if v else 0,
            "out_backlog_ms": round(1000.0 * self._out_samples / self.cfg.sample_rate, 1),
            "errors": self._errors,
            "audio": a,
            "video": v,
        }

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


def _quiet_close(handle: Any) -> None:
    try:
        handle.close()
    except Exception:
        log.exception("reasoner close failed")


# --------------------------------------------------------------------------- test/bench helper


class ServerThread:
    """Runs a :class:`LiveServer` on its own event loop in a background thread.

    ``with ServerThread(ServerConfig(port=0, token="t")) as st: st.url`` (tests, benchmarks).
    """

    def __init__(
        self,
        config: ServerConfig,
        reasoner: ReasonerEngine | None = None,
        renderer: RendererEngine | None = None,
    ):
        self.server = LiveServer(config, reasoner, renderer)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._main())

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        try:
            await self.server.start()
        except BaseException as e:
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        await self._stop.wait()
        await self.server.close()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    def start(self) -> ServerThread:
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        if self._stop is not None and self._thread.is_alive():
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        """The session endpoint, with the token."""
        tok = self.server.config.token
        q = f"?token={tok}" if tok else ""
        return f"ws://127.0.0.1:{self.port}{PATH}{q}"


# --------------------------------------------------------------------------- CLI


def add_serve_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``serve`` command to the ``livesense`` CLI."""
    p = subparsers.add_parser(
        "serve",
        help="run the live-session websocket server (and the browser client)",
        description=(
            "Serve live sessions on ws://HOST:PORT/v1/session and the browser client on "
            "http://HOST:PORT/. Without --token a random token is generated and printed."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="bind address (default: loopback only)")
    p.add_argument("--port", type=int, default=8765, help="TCP port (default 8765; 0 = any)")
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--token", help="access token clients must send as ?token=")
    auth.add_argument("--no-auth", action="store_true", help="accept clients without a token")
    p.add_argument("--max-sessions", type=int, default=8, metavar="N", help="default 8")
    p.add_argument(
        "--renderer", choices=("neural", "dsp"), default="neural",
        help="renderer for sessions that do not choose one: neural (default; the bundled "
        "model unless --checkpoint) or dsp (direct-path HRTF, the cheapest)",
    )  # fmt: skip
    p.add_argument(
        "--vlm", default="none", metavar="MODEL|tiny|none",
        help="video reasoner: none (default), tiny, fake (test stand-in) or a model name",
    )  # fmt: skip
    p.add_argument(
        "--allow-origin", action="append", default=[], metavar="ORIGIN",
        help="extra allowed browser Origin, e.g. https://example.org (repeatable)",
    )  # fmt: skip
    p.add_argument("--idle-timeout", type=float, default=30.0, metavar="S", help="default 30 s")
    p.add_argument("--max-session", type=float, default=4 * 3600.0, metavar="S", help="default 4 h")
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    """A :class:`ServerConfig` from ``serve`` arguments (ConfigError on bad values)."""
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be in 0..65535, got {args.port}")
    if args.max_sessions <= 0:
        raise ConfigError(f"--max-sessions must be positive, got {args.max_sessions}")
    for o in args.allow_origin:
        u = urlsplit(o)
        if u.scheme not in ("http", "https") or not u.netloc or u.path not in ("", "/"):
            raise ConfigError(f"--allow-origin must look like https://host[:port], got {o!r}")
    token = None if args.no_auth else (args.token or secrets.token_urlsafe(16))
    if token is not None and not token:
        raise ConfigError("--token must not be empty")
    return ServerConfig(
        host=args.host,
        port=args.port,
        token=token,
        max_sessions=args.max_sessions,
        renderer=args.renderer,
        vlm=args.vlm,
        allow_origins=tuple(o.rstrip("/") for o in args.allow_origin),
        idle_timeout_s=args.idle_timeout,
        max_session_s=args.max_session,
    )


def cmd_serve(args: argparse.Namespace) -> int:
    """Run ``livesense serve`` until Ctrl-C."""
    cfg = config_from_args(args)
    server = LiveServer(cfg)
    if cfg.renderer != "dsp" and server.renderer_engine(cfg.renderer) is None:
        print(f"warning: the {cfg.renderer} renderer is unavailable; sessions use dsp",
              file=sys.stderr)  # fmt: skip

    async def main() -> None:
        try:
            await server.start()
        except OSError as e:
            raise ConfigError(
                f"cannot listen on {cfg.host}:{cfg.port}: {e.strerror or e}"
            ) from None
        host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
        q = f"?token={cfg.token}" if cfg.token else ""
        print(f"livesense: serving live sessions on ws://{host}:{server.port}{PATH}{q}")
        print(f"livesense: browser client at http://{host}:{server.port}/{q}", flush=True)
        try:
            await asyncio.Future()
        finally:
            await server.close()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m livesense.streaming.server``: the ``serve`` command on its own."""
    parser = argparse.ArgumentParser(prog="livesense")
    sub = parser.add_subparsers(dest="command", required=True)
    add_serve_parser(sub)
    args = parser.parse_args(["serve", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.WARNING)
    try:
        return cmd_serve(args)
    except LivesenseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
