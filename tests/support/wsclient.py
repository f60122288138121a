"""Raw websocket helpers for the live-server tests (``from wsclient import ...``; pyproject puts
tests/support on the path): sessions, frames, HTTP, a client that never reads."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from livesense.live.engines import Engines, FakeReasoner
from livesense.live.server.app import ServerThread
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import (
    Kind,
    StartConfig,
    decode_audio,
    encode_audio,
    pack_frame,
    unpack_frame,
)

TOKEN = "secret-token"


def server_thread(**kw: Any) -> ServerThread:
    reasoner = kw.pop("reasoner", FakeReasoner(every=1))
    renderers = kw.pop("renderers", None)
    return ServerThread(ServerConfig(port=0, token=TOKEN, **kw), Engines(renderers, reasoner))


def open_session(
    st: ServerThread, start: StartConfig | None = None, **kw: Any
) -> tuple[ClientConnection, dict]:
    ws = connect(st.url, **kw)
    ws.send(json.dumps((start or StartConfig()).to_json()))
    ready = json.loads(ws.recv(timeout=10))
    assert ready["type"] == "ready", ready
    return ws, ready


def recv_until(
    ws: ClientConnection, pred: Callable[[Any], bool], timeout: float = 10.0
) -> list[Any]:
    """Messages (dicts for JSON, bytes for binary) up to and including the first matching."""
    out: list[Any] = []
    end = time.monotonic() + timeout
    while True:
        m = ws.recv(timeout=max(0.01, end - time.monotonic()))
        m = json.loads(m) if isinstance(m, str) else m
        out.append(m)
        if pred(m):
            return out


def is_type(t: str) -> Callable[[Any], bool]:
    return lambda m: isinstance(m, dict) and m.get("type") == t


def audio_frame(seq: int, x: np.ndarray, fmt: str = "s16le", pts: int = 0) -> bytes:
    return pack_frame(Kind.AUDIO_IN, seq, pts, encode_audio(x[None], fmt))


def jpeg(colour: tuple[int, int, int] = (200, 10, 10), size: tuple[int, int] = (32, 24)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="JPEG")
    return buf.getvalue()


def finish(ws: ClientConnection, earlier: list | None = None) -> tuple[np.ndarray, list[dict]]:
    """Send stop; return the binaural audio (``earlier`` messages included) and the JSON events
    up to ``done``; check the close code 1000."""
    ws.send(json.dumps({"type": "stop"}))
    msgs = (earlier or []) + recv_until(ws, is_type("done"), 20)
    frames = [unpack_frame(m) for m in msgs if isinstance(m, bytes)]
    audio = [decode_audio(f.payload, "s16le", 2) for f in frames]
    with pytest.raises(ConnectionClosed) as e:
        ws.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1000
    y = np.concatenate(audio, axis=1) if audio else np.zeros((2, 0), np.float32)
    return y, [m for m in msgs if isinstance(m, dict)]


class DeafClient:
    """A raw websocket client that never reads (tiny receive window)."""

    def __init__(self, st: ServerThread, fmt: str = "f32le"):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(5)
        s.connect(("127.0.0.1", st.port))
        key = base64.b64encode(os.urandom(16)).decode()
        s.sendall(
            f"GET /v1/session?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        self.sock = s
        self.send(json.dumps(StartConfig(format=fmt).to_json()).encode(), opcode=1)

    def send(self, payload: bytes, opcode: int = 2) -> None:
        n = len(payload)
        if n < 126:
            head = bytes([0x80 | opcode, 0x80 | n])
        elif n < 65536:
            head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
        else:
            head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
        self.sock.sendall(head + b"\0\0\0\0" + payload)  # zero mask key: payload as is


def http(st: ServerThread, path: str, headers: dict | None = None) -> tuple[int, bytes, str]:
    req = urllib.request.Request(st.http_url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read(), r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers.get("Content-Type", "")
