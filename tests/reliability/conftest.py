"""The fault suite's harness: an in-process server with log capture, clients that record every
event and the close code, and the invariants every session must end with.

Tests run in importlib mode and cannot import this module: the helpers reach them through the
``rel`` fixture (a namespace) and the ``live_server`` factory. The contract they check is the
server's after issue 14 (docs/protocol.md): every session ends with ``done`` (close 1000, or
1001 when the server shuts down) or with an ``error`` event and a documented close code; 1011
only after an ``internal`` error; ``samples_in == samples_out`` (== what the client received)
whenever ``done`` came.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import logging
import os
import socket
import struct
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from livesense.live.engines import Engines, FakeReasoner
from livesense.live.server.app import ServerThread
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import Kind, pack_frame, unpack_frame
from livesense.stats import LatencySummary

TOKEN = "reliability"
CHUNK = 480
RATE = 48000
DOCUMENTED_CLOSE = {1000, 1001, 1002, 1008, 1009, 1011, 1013}
NO_EVENT_NEEDED = {1002, 1009, 1013}  # the websockets library's closes, and "server full"
ABNORMAL = 1006  # no close frame came (the connection was dropped)


def rss_mb() -> float:
    """This process's resident set size (the in-process server's memory), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


# --------------------------------------------------------------------------- server + logs


class LogCapture(logging.Handler):
    """Records of the server's loggers (``livesense.*`` and ``websockets.server``)."""

    NAMES = ("livesense", "websockets.server")

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []
        self._levels: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self) -> None:
        for name in self.NAMES:
            lg = logging.getLogger(name)
            self._levels.append((lg, lg.level))
            if lg.getEffectiveLevel() > logging.WARNING:
                lg.setLevel(logging.WARNING)
            lg.addHandler(self)

    def detach(self) -> None:
        for lg, level in self._levels:
            lg.removeHandler(self)
            lg.setLevel(level)
        self._levels.clear()

    def tracebacks(
        self, allow: Callable[[logging.LogRecord], bool] | None = None
    ) -> list[logging.LogRecord]:
        """Records with a traceback or at ERROR and above (minus the ``allow`` ed ones)."""
        bad = [r for r in self.records if r.exc_info or r.levelno >= logging.ERROR]
        return [r for r in bad if allow is None or not allow(r)]


@dataclass
class Harness:
    """An in-process server (``st``) with its log capture and the RSS it started with."""

    st: ServerThread
    logs: LogCapture
    rss0: float = field(default_factory=rss_mb)

    @property
    def url(self) -> str:
        return self.st.url

    @property
    def port(self) -> int:
        return self.st.port

    def healthz(self) -> dict[str, Any]:
        return http_json(f"{self.st.http_url}/healthz")

    def wait_sessions(self, n: int, timeout: float = 2.0) -> int:
        """Poll /healthz until it reports ``n`` sessions (or time runs out); the last count."""
        end = time.monotonic() + timeout
        while True:
            got = self.healthz()["sessions"]
            if got == n or time.monotonic() > end:
                return got
            time.sleep(0.02)

    def assert_healthy(
        self,
        max_rss_growth_mb: float = 64.0,
        allow: Callable[[logging.LogRecord], bool] | None = None,
    ) -> None:
        """The server answers /healthz, logged no traceback, and its memory stayed bounded."""
        assert self.healthz()["ok"] is True
        bad = self.logs.tracebacks(allow)
        fmt = logging.Formatter("%(name)s %(levelname)s %(message)s")
        assert not bad, "the server logged errors/tracebacks:\n" + "\n".join(map(fmt.format, bad))
        grown = rss_mb() - self.rss0
        assert grown < max_rss_growth_mb, f"RSS grew by {grown:.0f} MB (> {max_rss_growth_mb})"


def http_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


@pytest.fixture
def live_server() -> Iterator[Callable[..., Harness]]:
    """``live_server(renderers=None, reasoner=FakeReasoner(every=1), **ServerConfig fields)``:
    a started in-process server (token, DSP renderer by default); stopped at teardown."""
    made: list[Harness] = []

    def start(**kw: Any) -> Harness:
        reasoner = kw.pop("reasoner", FakeReasoner(every=1))
        renderers = kw.pop("renderers", None)
        kw.setdefault("renderer", "dsp")
        cfg = ServerConfig(port=0, token=TOKEN, **kw)
        logs = LogCapture()
        logs.attach()
        st = ServerThread(cfg, Engines(renderers, reasoner))
        h = Harness(st, logs)
        made.append(h)
        st.start()
        return h

    yield start
    for h in made:
        h.st.stop()
        h.logs.detach()


# --------------------------------------------------------------------------- clients


def start_message(fmt: str = "s16le", **kw: Any) -> dict[str, Any]:
    """A valid ``start`` (DSP renderer, speaker 1.5 m ahead); ``kw`` adds or replaces keys."""
    msg: dict[str, Any] = {
        "type": "start",
        "audio": {"sample_rate": RATE, "format": fmt, "channels": 1},
        "renderer": "dsp",
        "speaker": {"position": [1.5, 0.0, 0.0]},
    }
    msg.update(kw)
    return msg


def encode(x: np.ndarray, fmt: str) -> bytes:
    if fmt == "s16le":
        return np.clip(np.round(x * 32768.0), -32768, 32767).astype("<i2").tobytes()
    return np.asarray(x, "<f4").tobytes()


def audio_frame(seq: int, x: np.ndarray, pts: int, fmt: str = "s16le") -> bytes:
    return pack_frame(Kind.AUDIO_IN, seq, pts, encode(x, fmt))


@dataclass
class Ending:
    """How a connection ended, as its client saw it."""

    events: list[dict[str, Any]]
    code: int | None  # None: still open when we gave up; 1006: dropped without a close frame
    reason: str
    samples: int  # binaural samples received

    @property
    def done(self) -> dict[str, Any] | None:
        d = [e for e in self.events if e.get("type") == "done"]
        return d[-1] if d else None

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("type") == "error"]

    @property
    def error_codes(self) -> list[str]:
        return [e.get("code", "?") for e in self.errors]

    def describe(self) -> str:
        tail = [e if e.get("type") != "stats" else {"type": "stats"} for e in self.events[-4:]]
        return (
            f"close {self.code} {self.reason!r}, {len(self.errors)} error events "
            f"{sorted(set(self.error_codes))}, {self.samples} samples received, last events {tail}"
        )


class Client:
    """A websocket client whose reader thread records every event, the binaural samples, the
    latency of each output frame (send of the input packet with that pts -> receipt) and the
    close code. ``paused=True`` starts it not reading (``resume()`` reads on)."""

    def __init__(
        self,
        url: str,
        start: dict[str, Any] | str | bytes | None = None,
        *,
        paused: bool = False,
        wait_ready: bool = True,
        **connect_kw: Any,
    ):
        start = start_message() if start is None else start
        self.fmt = start.get("audio", {}).get("format", "s16le") if isinstance(start, dict) else ""
        connect_kw.setdefault("compression", None)
        connect_kw.setdefault("open_timeout", 10)
        self.ws = connect(url, **connect_kw)
        self.events: list[dict[str, Any]] = []
        self.samples = 0
        self.latencies_ms: list[float] = []
        self.sent_at: dict[int, float] = {}
        self.code: int | None = None
        self.reason = ""
        self.closed = threading.Event()
        self._cond = threading.Condition()
        self._resume = threading.Event()
        if not paused:
            self._resume.set()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.send(json.dumps(start) if isinstance(start, dict) else start)
        self.ready: dict[str, Any] | None = None
        if wait_ready and not paused:
            first = self.wait_for(lambda e: True, 10)
            self.ready = first if first and first.get("type") == "ready" else None

    def _read(self) -> None:
        self._resume.wait()
        width = 2 if self.fmt != "f32le" else 4
        try:
            while True:
                m = self.ws.recv()
                now = time.perf_counter()
                if isinstance(m, bytes):
                    f = unpack_frame(m)
                    self.samples += len(f.payload) // (2 * width)
                    t = self.sent_at.pop(f.pts, None)
                    if t is not None:
                        self.latencies_ms.append(1000.0 * (now - t))
                    continue
                with self._cond:
                    self.events.append(json.loads(m))
                    self._cond.notify_all()
        except ConnectionClosed as e:
            self.code = e.rcvd.code if e.rcvd is not None else ABNORMAL
            self.reason = e.rcvd.reason if e.rcvd is not None else ""
        except Exception as e:  # a bad frame from the server: record it as a failure
            self.code, self.reason = -1, f"client-side {type(e).__name__}: {e}"
        finally:
            with self._cond:
                self.closed.set()
                self._cond.notify_all()

    def resume(self) -> None:
        self._resume.set()

    def send(self, data: str | bytes) -> bool:
        """Send one message; False once the connection is closed."""
        if self.closed.is_set():
            return False
        try:
            self.ws.send(data)
            return True
        except (ConnectionClosed, OSError, RuntimeError):
            return False

    def send_json(self, msg: Any) -> bool:
        return self.send(json.dumps(msg))

    def send_audio(self, seq: int, x: np.ndarray, pts: int) -> bool:
        self.sent_at[pts] = time.perf_counter()
        return self.send(audio_frame(seq, x, pts, self.fmt or "s16le"))

    def wait_for(self, pred: Callable[[dict], bool], timeout: float) -> dict[str, Any] | None:
        """The first event (from the start) matching ``pred``; None on timeout or close."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for e in self.events:
                    if pred(e):
                        return e
                left = end - time.monotonic()
                if left <= 0 or self.closed.is_set():
                    return None
                self._cond.wait(min(left, 0.1))

    def barrier(self, timeout: float = 10.0) -> bool:
        """Send an unknown message type and wait for its ``unknown_type`` error: every message
        sent before it has been handled by the server (the receive loop is in order)."""
        tag = f"barrier-{len(self.events)}-{time.perf_counter_ns()}"
        if not self.send_json({"type": tag}):
            return False
        found = self.wait_for(lambda e: e.get("type") == "error" and tag in e.get("message", ""),
                              timeout)  # fmt: skip
        return found is not None

    def ending(self, timeout: float = 20.0) -> Ending:
        self.closed.wait(timeout)
        self._reader.join(1.0)
        with self._cond:
            return Ending(list(self.events), self.code, self.reason, self.samples)

    def finish(self, timeout: float = 20.0) -> Ending:
        """Send ``stop`` (if still open) and wait for the close."""
        self.send_json({"type": "stop"})
        return self.ending(timeout)

    def abort(self) -> None:
        """Drop the TCP connection (RST), no closing handshake."""
        abort_socket(self.ws.socket)


def abort_socket(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer sees a reset, no FIN, no websocket close."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    except OSError:
        pass


def check_ending(e: Ending, what: str = "session", no_event_needed: set[int] = NO_EVENT_NEEDED):
    """The contract's end of a session: ``done`` (1000/1001) with equal sample counts, or an
    ``error`` event and a documented close code; 1011 only after an ``internal`` error."""
    assert e.code is not None, f"{what}: still open (a stall): {e.describe()}"
    assert e.code in DOCUMENTED_CLOSE, f"{what}: undocumented close: {e.describe()}"
    if e.code == 1011:
        assert "internal" in e.error_codes, (
            f"{what}: 1011 without an internal error: {e.describe()}"
        )
    done = e.done
    if done is not None:
        assert e.code in (1000, 1001), f"{what}: done, then close {e.code}: {e.describe()}"
        assert e.events[-1] is done, f"{what}: events after done: {e.describe()}"
        assert any(m.get("type") == "stats" for m in e.events), f"{what}: no stats before done"
        assert done["samples_in"] == done["samples_out"] == e.samples, (
            f"{what}: samples_in {done['samples_in']}, samples_out {done['samples_out']}, "
            f"received {e.samples}: {e.describe()}"
        )
    else:
        assert e.code not in (1000, 1001), f"{what}: closed {e.code} without done: {e.describe()}"
        if e.code not in no_event_needed:
            assert e.errors, f"{what}: closed {e.code} without an error event: {e.describe()}"


# --------------------------------------------------------------------------- a raw socket


class RawWs:
    """A hand-written websocket client: sends any frame (RSV bits, bad lengths), reads frames
    one at a time, never answers a close unless told to."""

    def __init__(self, port: int, extensions: str | None = None, rcvbuf: int | None = None):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        ext = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        s.sendall(
            f"GET /v1/session?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{ext}\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            b = s.recv(1)
            if not b:
                raise ConnectionError(f"handshake cut off: {head!r}")
            head += b
        self.response = head.decode("latin-1")
        assert self.response.startswith("HTTP/1.1 101"), self.response
        self.headers = {
            k.strip().lower(): v.strip()
            for k, v in (ln.split(":", 1) for ln in self.response.split("\r\n")[1:] if ":" in ln)
        }
        self.sock = s
        self._buf = b""

    def send_frame(self, payload: bytes, opcode: int = 2, rsv1: bool = False) -> None:
        n = len(payload)
        b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
        if n < 126:
            head = bytes([b0, 0x80 | n])
        elif n < 65536:
            head = bytes([b0, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([b0, 0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(head + b"\0\0\0\0" + payload)  # zero mask key: the payload as is

    def send_text(self, text: str) -> None:
        self.send_frame(text.encode(), opcode=1)

    def _take(self, n: int) -> bytes:
        while len(self._buf) < n:
            b = self.sock.recv(65536)
            if not b:
                raise ConnectionError("connection closed")
            self._buf += b
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(self._take(2), "big")
        elif n == 127:
            n = int.from_bytes(self._take(8), "big")
        return b0 & 0x0F, self._take(n)

    def read_until_close(self, timeout: float = 10.0) -> tuple[list[dict], int | None, str]:
        """(JSON events, close code, reason) up to the server's close frame (None: none came)."""
        self.sock.settimeout(timeout)
        events: list[dict] = []
        try:
            while True:
                op, payload = self.read_frame()
                if op == 1:
                    events.append(json.loads(payload))
                elif op == 8:
                    code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                    return events, code, payload[2:].decode(errors="replace")
        except (OSError, ConnectionError):
            return events, None, ""

    def close(self) -> None:
        abort_socket(self.sock)


# --------------------------------------------------------------------------- a well-behaved peer


class Streamer:
    """A real-time session in a thread: 10 ms packets of quiet noise, paced by the clock, until
    ``seconds`` of audio are sent (or ``stop()``); then ``stop`` and the ending."""

    def __init__(self, h: Harness, seconds: float = 60.0, seed: int = 0):
        self.h, self.seconds, self.seed = h, seconds, seed
        self.sent = 0
        self.result: Ending | None = None
        self.client: Client | None = None
        self._stop = threading.Event()
        self.started = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Streamer:
        self._t.start()
        assert self.started.wait(10), "the streaming session did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        c = self.client = Client(self.h.url)
        self.started.set()
        x = (0.05 * np.random.default_rng(self.seed).standard_normal(CHUNK)).astype(np.float32)
        t0 = time.perf_counter()
        for seq in range(int(self.seconds * 100)):
            if self._stop.is_set():
                break
            time.sleep(max(0.0, t0 + seq * 0.01 - time.perf_counter()))
            if not c.send_audio(seq, x, seq * CHUNK):
                break
            self.sent += CHUNK
        self.result = c.finish(30)

    def stop(self, timeout: float = 40.0) -> Ending:
        self._stop.set()
        self._t.join(timeout)
        assert self.result is not None, "the streaming session never ended"
        return self.result

    def latency(self) -> LatencySummary:
        assert self.client is not None
        s = LatencySummary.of(self.client.latencies_ms)
        assert s is not None, "no audio came back"
        return s

    def check(self, p99_ms: float) -> None:
        """It ended with done, nothing lost, and its p99 latency stayed under ``p99_ms``."""
        e = self.stop()
        check_ending(e, "the streaming session")
        assert e.done is not None and e.samples == self.sent, e.describe()
        lat = self.latency()
        assert lat.p99 < p99_ms, f"the other session's latency: {lat}"


def _load_fuzz() -> Any:
    """fuzz.py next to this file (importlib mode puts no test folder on sys.path)."""
    spec = importlib.util.spec_from_file_location(
        "reliability_fuzz", Path(__file__).with_name("fuzz.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def rel() -> SimpleNamespace:
    """The harness's helpers for the tests (see the module docstring)."""
    return SimpleNamespace(
        TOKEN=TOKEN, CHUNK=CHUNK, RATE=RATE, Client=Client, RawWs=RawWs, Streamer=Streamer,
        Ending=Ending, check_ending=check_ending, start_message=start_message,
        audio_frame=audio_frame, abort_socket=abort_socket, http_json=http_json,
        fuzz=_load_fuzz(),
    )  # fmt: skip
