"""The live-session server (``livesense serve``): HTTP, websocket accept, the shared workers.

asyncio does I/O only. Rendering runs on shared :class:`AudioWorkers` threads, JPEG decoding
and the reasoner on a shared video pool; the engines (one renderer engine per model, one
reasoner) are built by the caller and passed in. Each accepted connection becomes a
:class:`~livesense.live.server.session.LiveSession`; protocol in docs/protocol.md.

HTTP on the same port (GET and HEAD only; 405 otherwise): ``/`` serves the browser client
(``livesense/live/server/web/``), ``/healthz`` reports the session count, and ``/v1/session``
upgrades to a websocket after the Origin allowlist (HTTP 403) and the token pass: ``?token=``
in the URL (a wrong one is HTTP 401) or, without one, ``"token"`` in the ``start`` message
(an ``unauthorized`` error + 1008). Every comparison is constant-time.

A connection takes a session slot only once its ``start`` is valid; until then it counts as
unstarted (at most ``max_unstarted_per_ip`` per address, ``max_unstarted`` in all). Messages
are never compressed (no permessage-deflate: nothing to inflate, no decompression bombs).
:meth:`LiveServer.drain` (SIGTERM/SIGINT in ``livesense serve``) stops accepting and lets
every session finish with ``done`` before closing it with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import mimetypes
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from livesense.live.engines import Engines
from livesense.live.server.config import ServerConfig
from livesense.live.server.events import (
    CLOSE_ERROR,
    CLOSE_GOING_AWAY,
    CLOSE_POLICY,
    CLOSE_TRY_AGAIN,
    ErrorEvent,
    to_wire,
)
from livesense.live.server.protocol import (
    PATH,
    PROTOCOL_VERSION,
    ErrorCode,
    ProtocolError,
    StartConfig,
    parse_json,
    parse_start,
)
from livesense.live.server.session import LiveSession
from livesense.live.server.workers import AudioWorkers

__all__ = ["LiveServer", "ServerThread"]

log = logging.getLogger(__name__)


class LiveServer:
    """Websocket + static HTTP server for live sessions (see module docstring)."""

    def __init__(self, config: ServerConfig, engines: Engines | None = None):
        self.config = config
        self.engines = engines if engines is not None else Engines()
        self.audio_workers: AudioWorkers | None = None
        self.video_pool: ThreadPoolExecutor | None = None
        self.sessions: dict[str, LiveSession] = {}
        self._slots = 0
        self._unstarted: dict[str, int] = {}  # address -> connections that have not started
        self._waiting: set[ServerConnection] = set()  # those connections
        self.draining = False
        self._server: Server | None = None
        self.port = config.port
        self.started = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start the workers."""
        threads = self.config.audio_threads or max(2, self.config.max_sessions)
        self.audio_workers = AudioWorkers(threads)
        self.video_pool = ThreadPoolExecutor(self.config.video_threads, "video-worker")
        self._server = await serve(
            self._handler,
            self.config.host,
            self.config.port,
            process_request=self._process_request,
            max_size=self.config.max_message_bytes,
            max_queue=32,
            compression=None,
            close_timeout=self.config.close_timeout_s,
            server_header=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def drain(self, timeout: float | None = None) -> None:
        """Stop accepting; let every session render what it received and end with ``done``
        and close code 1001 (up to ``timeout`` s, ``drain_timeout_s`` by default)."""
        self.draining = True
        if self._server is not None:
            self._server.close(close_connections=False)  # stop listening only
        end = time.monotonic() + (self.config.drain_timeout_s if timeout is None else timeout)
        for session in list(self.sessions.values()):
            session.drain()
        closing = [ws.close(CLOSE_GOING_AWAY, "server shutting down") for ws in self._waiting]
        await asyncio.gather(*closing, return_exceptions=True)
        while (self.sessions or self._waiting) and time.monotonic() < end:
            await asyncio.sleep(0.05)

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

    # -- HTTP ---------------------------------------------------------------------------------

    def allowed_origins(self) -> set[str]:
        port = self.port
        hosts = {self.config.host, "localhost", "127.0.0.1", "[::1]"}
        out = {f"{scheme}://{h}:{port}" for h in hosts for scheme in ("http", "https")}
        return out | set(self.config.allow_origins)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return _response(HTTPStatus.METHOD_NOT_ALLOWED, "only GET and HEAD\n")
        url = urlsplit(request.path)
        if url.path == PATH:
            origin = request.headers.get("Origin")
            if origin is not None and origin not in self.allowed_origins():
                return _response(HTTPStatus.FORBIDDEN, f"origin {origin} is not allowed\n")
            if self.draining:
                return _response(HTTPStatus.SERVICE_UNAVAILABLE, "server shutting down\n")
            token = parse_qs(url.query, keep_blank_values=True).get("token")
            if token is not None and not self._token_ok(token[0]):
                return _response(HTTPStatus.UNAUTHORIZED, "missing or invalid token\n")
            return None  # without ?token=, ``start`` must carry it
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

    def _token_ok(self, token: object) -> bool:
        if self.config.token is None:
            return True
        if not isinstance(token, str):
            return False
        try:
            return hmac.compare_digest(token.encode(), self.config.token.encode())
        except UnicodeEncodeError:  # a lone surrogate
            return False

    # -- websocket ----------------------------------------------------------------------------

    def _full(self) -> str | None:
        if self._slots >= self.config.max_sessions:
            return f"server full: {self.config.max_sessions} sessions; try later"
        return None

    async def _handler(self, ws: ServerConnection) -> None:
        cfg = self.config
        if (full := self._full()) is not None:
            await ws.close(CLOSE_TRY_AGAIN, full)
            return
        addr = str(ws.remote_address[0]) if ws.remote_address else "?"
        if self._unstarted.get(addr, 0) >= cfg.max_unstarted_per_ip or (
            len(self._waiting) >= cfg.max_unstarted
        ):
            await ws.close(CLOSE_POLICY, "too many connections waiting to start; send start")
            return
        self._unstarted[addr] = self._unstarted.get(addr, 0) + 1
        self._waiting.add(ws)
        try:
            start = await self._read_start(ws)
        finally:
            self._waiting.discard(ws)
            self._unstarted[addr] -= 1
            if not self._unstarted[addr]:
                del self._unstarted[addr]
        if start is None:
            return
        if (full := self._full()) is not None:  # the slots went while this one was starting
            await _reject(ws, ErrorCode.RATE_LIMITED, full, CLOSE_TRY_AGAIN)
            return
        self._slots += 1  # no await since the check: concurrent starts cannot overbook
        session: LiveSession | None = None
        end: tuple[int, str] | None = None
        try:
            session = LiveSession(self, ws, start)
            self.sessions[session.id] = session
            if self.draining:
                session.drain()
            end = await session.run()
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("session failed")
            end = (CLOSE_ERROR, "internal error")
        finally:
            if session is not None:
                session.release()
                self.sessions.pop(session.id, None)
            self._slots -= 1  # free before waiting for the client's close frame
        if end is not None:
            with contextlib.suppress(Exception):
                await ws.close(*end)

    async def _read_start(self, ws: ServerConnection) -> StartConfig | None:
        try:
            msg = await asyncio.wait_for(ws.recv(), self.config.start_timeout_s)
        except asyncio.TimeoutError:
            await _reject(ws, ErrorCode.START_TIMEOUT, "no start message")
            return None
        except ConnectionClosed:
            return None
        try:
            if not isinstance(msg, str):
                raise ProtocolError(
                    ErrorCode.NOT_STARTED, 'the first message must be the JSON "start" message'
                )
            parsed = parse_json(msg, self.config.max_text_bytes)
            if self.config.token is not None and ws.request is not None:
                in_url = "token" in parse_qs(
                    urlsplit(ws.request.path).query, keep_blank_values=True
                )
                if not in_url and not self._token_ok(parsed.get("token")):
                    raise ProtocolError(
                        ErrorCode.UNAUTHORIZED, 'missing or invalid token (in the URL or "start")'
                    )
            return parse_start(parsed, self.config.renderer)
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
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),  # the page URL may hold the token
            ("Content-Security-Policy", _CSP),
            ("Connection", "close"),
        ]
    )
    return Response(status.value, status.phrase, headers, data)


_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' blob: data:; "
    "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


async def _reject(
    ws: ServerConnection, code: ErrorCode, message: str, close: int = CLOSE_POLICY
) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.send(to_wire(ErrorEvent(code, message)))
        await ws.close(close, message[:120])


# --------------------------------------------------------------------------- test/bench helper


class ServerThread:
    """Runs a :class:`LiveServer` on its own event loop in a background thread.

    ``with ServerThread(ServerConfig(port=0, token="t")) as st: st.url`` (tests, benchmarks).
    """

    def __init__(self, config: ServerConfig, engines: Engines | None = None):
        self.server = LiveServer(config, engines)
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
