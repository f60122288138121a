"""A live session under bad input and faults: poses, JSON, tiny packets, renderer and reasoner
failures, unstarted connections, the slot after a server-side close, drain, HTTP hardening."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from wsclient import (
    TOKEN,
    DeafClient,
    audio_frame,
    finish,
    http,
    is_type,
    jpeg,
    open_session,
    recv_until,
    server_thread,
)

from livesense.audio.geometry import Pose
from livesense.live.engines import DspEngine, FakeReasoner, SessionRenderer
from livesense.live.server.config import SessionLimits
from livesense.live.server.protocol import Kind, StartConfig, pack_frame

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


def _errors(events: list[dict]) -> list[str]:
    return [e["code"] for e in events if e.get("type") == "error"]


def _drain(ws: Any) -> list[Any]:
    """What the client still holds after the connection closed."""
    out = []
    with contextlib.suppress(ConnectionClosed, TimeoutError, EOFError):
        while True:
            out.append(ws.recv(timeout=1))
    return out


def _close_code(ws: Any) -> int | None:
    with pytest.raises(ConnectionClosed) as e:
        while True:
            ws.recv(timeout=10)
    return None if e.value.rcvd is None else e.value.rcvd.code


class _Counting(DspEngine):
    """The DSP engine, counting renderer calls (or raising on the ``fail_at``-th)."""

    def __init__(self, fail_at: int | None = None):
        super().__init__()
        self.calls = 0
        self.fail_at = fail_at

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer:
        r = super().create(speaker, listener, sample_rate)
        step = r.step

        def counted(x: np.ndarray) -> np.ndarray | None:
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("renderer bug")
            return step(x)

        r.step = counted  # type: ignore[method-assign]
        return r


# ------------------------------------------------------------------------------ poses


@pytest.mark.parametrize(
    ("pose", "needle"),
    [
        ({"pts": 10**12, "speaker": {"position": [1, 0, 0]}}, "more than 10 s ahead"),
        ({"pts": 2**1024, "speaker": {"position": [1, 0, 0]}}, "pose.pts"),
        ({"pts": -1, "speaker": {"position": [1, 0, 0]}}, "pose.pts"),
        ({"speaker": {"position": [10**400, 0, 0]}}, "finite number"),
        ({"speaker": {"position": [1, 0, 0], "orientation": [1e154, 0, 0, 1]}}, "1e6"),
        ({"speaker": {"position": [0.01, 0, 0]}}, "inside the listener's head"),
        ({"listener": {"position": [1.49, 0, 0]}}, "inside the listener's head"),
    ],
)
def test_bad_poses_are_errors_and_the_audio_goes_on(pose: dict, needle: str) -> None:
    with server_thread() as st:
        ws, _ = open_session(st)
        x = np.full(480, 0.1, np.float32)
        ws.send(audio_frame(0, x))
        ws.send(json.dumps({"type": "pose", **pose}))
        seen = recv_until(ws, is_type("error"))
        assert seen[-1]["code"] == "bad_message" and needle in seen[-1]["message"], seen[-1]
        ws.send(audio_frame(1, x, pts=480))
        y, events = finish(ws, seen)
        assert y.shape == (2, 960) and events[-1]["samples_out"] == 960


def test_a_pose_flood_is_rate_limited_and_does_not_stall_another_session() -> None:
    limits = SessionLimits(pose_burst=20, pose_rate=10.0)
    with server_thread(limits=limits) as st:
        calm, _ = open_session(st)
        flood, _ = open_session(st)
        seen: list[Any] = []
        with pytest.raises(ConnectionClosed) as e:
            for i in range(2000):  # within the horizon: only the rate limit applies
                flood.send(json.dumps({"type": "pose", "pts": 1000 + i, "listener": {
                    "position": [0, 0, 0], "orientation": [0, 0, 0.01 * i, 1]}}))  # fmt: skip
            while True:
                seen.append(flood.recv(timeout=10))
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008
        assert e.value.rcvd.reason == "too many protocol errors"
        seen += _drain(flood)
        codes = _errors([json.loads(m) for m in seen if isinstance(m, str)])
        assert set(codes) == {"rate_limited"} and len(codes) == 200  # max_errors
        x = np.full(480, 0.1, np.float32)
        for seq in range(20):
            calm.send(audio_frame(seq, x, pts=480 * seq))
        y, events = finish(calm)
        assert y.shape == (2, 20 * 480) and not _errors(events)
        assert events[-2]["latency_ms"]["p99"] < 500


def test_consecutive_poses_for_the_same_sample_merge() -> None:
    engine = _Counting()
    with server_thread(renderers={"dsp": engine}) as st:
        ws, _ = open_session(st, StartConfig(renderer="dsp"))
        for i in range(50):  # between two packets: all for the next sample
            ws.send(json.dumps({"type": "pose", "speaker": {"position": [1, 0.01 * i, 0]}}))
        session = next(iter(st.server.sessions.values()))
        deadline = time.monotonic() + 5
        while session.audio.has_pending() and time.monotonic() < deadline:
            time.sleep(0.01)
        ws.send(json.dumps({"type": "pose", "speaker": {"position": [1, 0, 0]}}))
        assert session.audio.pending() == 0 and len(session.audio._pending) <= 1
        finish(ws)


# ------------------------------------------------------------------------------ JSON


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("[" * 2000, "bad_json"),
        ('{"type": "pose", "speaker": {"position": [' + "9" * 400 + ", 0, 0]}}", "bad_message"),
        ('{"type": "pose", "speaker": {"position": [1' + "0" * 5000 + ", 0, 0]}}", "bad_json"),
        ('{"type": "ask", "text": "\\ud800 what?"}', "bad_message"),
        ('{"type": "ask", "text": "ok", "id": "\\udfff"}', "bad_message"),
        ('{"type": "ask", "text": "ok", "id": ' + "1" * 30 + "}", "bad_message"),
    ],
)
def test_malformed_text_gets_an_error_event_never_1011(text: str, code: str) -> None:
    with server_thread() as st:
        ws, _ = open_session(st, StartConfig(reasoning=True))
        ws.send(text)
        seen = recv_until(ws, is_type("error"))
        assert seen[-1]["code"] == code, seen[-1]
        _, events = finish(ws, seen)
        assert events[-1]["type"] == "done"


@pytest.mark.parametrize(
    "first",
    [
        "[" * 2000,
        '{"type": "start", "audio": {"channels": 1.0}}',
        '{"type": "start", "speaker": {"position": [' + "9" * 400 + ", 0, 0]}}",
    ],
)
def test_malformed_start_gets_an_error_and_1008(first: str) -> None:
    with server_thread() as st, connect(st.url) as ws:
        ws.send(first)
        err = json.loads(ws.recv(timeout=5))
        assert err["type"] == "error" and err["code"] in ("bad_json", "bad_message")
        assert _close_code(ws) == 1008


# ------------------------------------------------------------------------------ packets


def test_tiny_packets_are_rendered_together_and_nothing_is_lost() -> None:
    engine = _Counting()
    with server_thread(renderers={"dsp": engine}) as st:
        ws, _ = open_session(st, StartConfig(renderer="dsp"))
        rng = np.random.default_rng(1)
        x = (np.round(rng.uniform(-0.5, 0.5, 4800) * 32768) / 32768).astype(np.float32)
        for i in range(4800):  # one sample per packet
            ws.send(audio_frame(i, x[i : i + 1], pts=i))
        y, events = finish(ws)
        assert events[-1] == {"type": "done", "samples_in": 4800, "samples_out": 4800}
        assert y.shape == (2, 4800)
        assert engine.calls == 10  # a call per chunk's worth (one per packet before)
        ref = DspEngine().create(StartConfig().speaker, StartConfig().listener, 48000)
        np.testing.assert_allclose(y, ref.step(x[None]), atol=1e-4)


def test_a_failing_renderer_sends_internal_and_closes_1011_keeping_nothing() -> None:
    engine = _Counting(fail_at=3)
    with server_thread(renderers={"dsp": engine}) as st:
        ws, _ = open_session(st, StartConfig(renderer="dsp"))
        x = np.full(480, 0.1, np.float32)
        with pytest.raises(ConnectionClosed) as e:
            for seq in range(2000):
                ws.send(audio_frame(seq, x, pts=480 * seq))
                time.sleep(0.001)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1011
        seen = [json.loads(m) if isinstance(m, str) else m for m in _drain(ws)]
        errors = [m for m in seen if isinstance(m, dict) and m["type"] == "error"]
        assert [m["code"] for m in errors] == ["internal"]
        assert "renderer bug" in errors[0]["message"]
        assert not [m for m in seen if isinstance(m, dict) and m["type"] == "done"]
        deadline = time.monotonic() + 5
        while st.server.sessions and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not st.server.sessions  # the session (and what it held) is gone


def test_video_frames_after_video_disabled_are_counted() -> None:
    with server_thread() as st:
        ws, _ = open_session(st)
        for i in range(5):
            ws.send(pack_frame(Kind.VIDEO_IN, i, i * 100_000, jpeg()))
        _, events = finish(ws)
        assert _errors(events) == ["video_disabled"]
        assert events[-2]["video"]["frames_received"] == 5
        assert events[-2]["video"]["frames_dropped"] == 5 == events[-2]["frames_dropped"]


class _Broken(FakeReasoner):
    """A reasoner whose session raises on the second frame."""

    def open_session(self, on_event: Any) -> Any:
        handle = super().open_session(on_event)
        submit = handle.submit_frame

        def broken(frame: Any) -> bool:
            if frame.index >= 1:
                raise RuntimeError("tokenizer exploded")
            return submit(frame)

        handle.submit_frame = broken
        return handle


def test_a_failing_reasoner_is_reported_once_and_the_audio_goes_on() -> None:
    with server_thread(reasoner=_Broken(every=1)) as st:
        ws, _ = open_session(st, StartConfig(video=True, reasoning=True))
        x = np.full(480, 0.1, np.float32)
        for i in range(6):
            ws.send(pack_frame(Kind.VIDEO_IN, i, i * 100_000, jpeg()))
            time.sleep(0.05)
            ws.send(audio_frame(i, x, pts=480 * i))
        seen = recv_until(ws, is_type("error"))
        assert seen[-1]["code"] == "reasoner_failed"
        assert "video reasoning stopped" in seen[-1]["message"]
        ws.send(json.dumps({"type": "ask", "text": "what now?"}))
        y, events = finish(ws, seen)
        assert _errors(events) == ["reasoner_failed", "reasoner_failed"]
        assert y.shape == (2, 6 * 480)


# ------------------------------------------------------------------------------ connections


def _raw_upgrade(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(
        f"GET /v1/session?token={TOKEN} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_unstarted_connections_take_no_slot_and_are_capped_per_address() -> None:
    with server_thread(max_sessions=1, max_unstarted_per_ip=3, start_timeout_s=5) as st:
        idle = [_raw_upgrade(st.port) for _ in range(3)]
        with connect(st.url) as extra:  # a 4th unstarted one from the same address
            assert _close_code(extra) == 1008
        idle.pop().close()
        time.sleep(0.2)
        ws, _ = open_session(st)  # the one slot is free: the idle two hold none
        finish(ws)
        for s in idle:
            s.close()


def test_the_slot_is_free_at_once_after_a_server_side_close() -> None:
    with server_thread(max_sessions=1, max_errors=5) as st:
        deaf = DeafClient(st)  # never answers the close handshake
        for _ in range(6):
            deaf.send(b"not json", opcode=1)
        time.sleep(0.5)
        ws, _ = open_session(st)  # not "server full" for the 2 s close timeout
        finish(ws)
        deaf.sock.close()


def test_drain_finishes_every_session_with_done_and_1001() -> None:
    with server_thread() as st:
        a, _ = open_session(st)
        b, _ = open_session(st)
        x = np.full(480, 0.1, np.float32)
        for seq in range(10):
            a.send(audio_frame(seq, x, pts=480 * seq))
        recv_until(a, lambda m: isinstance(m, bytes))
        asyncio.run_coroutine_threadsafe(st.server.drain(5.0), st.loop).result(10)
        for ws, n in ((a, 10 * 480), (b, 0)):
            events = [m for m in recv_until(ws, is_type("done")) if isinstance(m, dict)]
            assert events[-1]["samples_in"] == events[-1]["samples_out"] >= (n and 480)
            assert _close_code(ws) == 1001
        with pytest.raises(OSError):  # no longer listening
            connect(st.url, open_timeout=2)


def test_no_compression_is_negotiated() -> None:
    with server_thread() as st, connect(st.url, compression="deflate") as ws:
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        ws.send(json.dumps(StartConfig().to_json()))
        assert json.loads(ws.recv(timeout=5))["type"] == "ready"


# ------------------------------------------------------------------------------ HTTP


def test_http_only_get_and_head_and_hardening_headers() -> None:
    with server_thread() as st:
        for method in ("POST", "PUT", "DELETE", "OPTIONS"):
            s = socket.create_connection(("127.0.0.1", st.port), timeout=5)
            s.sendall(f"{method} / HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert s.recv(64).startswith(b"HTTP/1.1 405"), method
            s.close()
        req = http(st, "/")
        assert req[0] == 200
        s = socket.create_connection(("127.0.0.1", st.port), timeout=5)
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        s.close()
        text = head.decode("latin-1").lower()
        assert "x-content-type-options: nosniff" in text
        assert "referrer-policy: no-referrer" in text
        assert "frame-ancestors 'none'" in text
