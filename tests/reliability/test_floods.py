"""Floods next to a well-behaved real-time session: poses, one-sample packets, a client that
stops reading, compressed frames. The other session keeps its latency; the flooding one ends
with error events and a documented close (or ``done``), never a stall."""

from __future__ import annotations

import contextlib
import json
import time
import zlib

import numpy as np
import pytest

from livesense.live.server.config import SessionLimits

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

P99_MS = 100.0  # the other session's p99 latency under a flood (10 ms packets)


@pytest.mark.parametrize("pts", ["future", "current"])
def test_pose_flood_is_cut_off_and_does_not_stall_other_sessions(live_server, rel, pts) -> None:
    """20,000 poses as fast as possible: beyond the horizon (``10**12 + i``) each is an error,
    at the current sample the rate limit answers; either way 1008 after max_errors."""
    h = live_server()
    with rel.Streamer(h, seconds=3.0) as other:
        time.sleep(0.3)
        flood = rel.Client(h.url)
        flood.send_audio(0, np.zeros(480, np.float32), 0)
        sent, t0 = 0, time.monotonic()
        for i in range(20_000):
            msg = {"type": "pose", "speaker": {"position": [1.0, 0.01 * (i % 100), 0.0]}}
            if pts == "future":
                msg["pts"] = 10**12 + i
            if not flood.send(json.dumps(msg)):
                break
            sent += 1
        e = flood.ending(10)
        cut_after = time.monotonic() - t0
        rel.check_ending(e, f"the flooding session ({sent} poses sent)")
        assert e.code == 1008, e.describe()
        expected = {"bad_message"} if pts == "future" else {"rate_limited"}
        assert expected <= set(e.error_codes), e.describe()
        assert cut_after < 10, f"the flood was cut off after {cut_after:.1f} s"
        other.check(P99_MS)
    h.assert_healthy()


def test_one_sample_packets_end_with_done_and_nothing_lost(live_server, rel) -> None:
    """A second of audio in 48,000 one-sample packets: coalesced, rendered, ``done``. The
    client pings every second and gives up after 5 s without a pong: the session stays alive
    (pings answered) while the server works through the backlog."""
    h = live_server()
    c = rel.Client(h.url, ping_interval=1.0, ping_timeout=5.0)
    x = (0.05 * np.random.default_rng(5).standard_normal(rel.RATE)).astype(np.float32)
    for i in range(rel.RATE):
        if not c.send(rel.audio_frame(i, x[i : i + 1], i)):
            break
    e = c.finish(60)
    rel.check_ending(e, "one-sample packets")
    assert e.code == 1000 and e.done is not None, e.describe()
    assert e.done["samples_in"] == e.done["samples_out"] == e.samples == rel.RATE, e.describe()
    h.assert_healthy()


def test_a_client_that_stops_reading_is_closed_1008_and_others_go_on(live_server, rel) -> None:
    h = live_server(limits=SessionLimits(max_out_backlog_s=0.5), idle_timeout_s=30.0)
    with rel.Streamer(h, seconds=3.0) as other:
        before = set(h.st.server.sessions)
        deaf = rel.RawWs(h.port, rcvbuf=4096)  # a small window, and it never reads ...
        deaf.send_text(json.dumps(rel.start_message("f32le")))
        end = time.monotonic() + 5
        while not set(h.st.server.sessions) - before and time.monotonic() < end:
            time.sleep(0.01)
        (sid,) = set(h.st.server.sessions) - before
        # Backpressure may pause the server's reads for a moment on a loaded machine; only a
        # long silence means it gave up on us (it then resets the connection).
        deaf.sock.settimeout(8.0)
        x = np.zeros(480, np.float32)
        with contextlib.suppress(OSError):  # a reset: the server already gave up on us
            for seq in range(3000):  # 30 s of audio as fast as possible: 11.5 MB of output
                deaf.send_frame(rel.audio_frame(seq, x, 480 * seq, "f32le"))
        end = time.monotonic() + 20  # still not reading: the server must give up on its own
        while sid in h.st.server.sessions and time.monotonic() < end:
            time.sleep(0.05)
        assert sid not in h.st.server.sessions, "the server kept a client that does not read"
        events, code, reason = deaf.read_until_close(5)  # whatever of its last words is left
        deaf.close()
        if code is not None:  # no reset: the error event and the close came through
            e = rel.Ending(events, code, reason, 0)
            rel.check_ending(e, "the client that stopped reading")
            assert e.code == 1008 and "client_not_reading" in e.error_codes, e.describe()
        other.check(P99_MS)
    assert h.wait_sessions(0) == 0
    h.assert_healthy()


def _bomb() -> bytes:
    """A permessage-deflate payload (raw deflate, no tail) of 4 MiB of zeros: ~4 kB."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = z.compress(bytes(16) + bytes(4 * 1024 * 1024)) + z.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def test_no_compression_is_negotiated(live_server, rel) -> None:
    h = live_server()
    c = rel.Client(h.url, compression="deflate")  # the websockets client offers deflate
    assert c.ready is not None, c.events
    assert c.ws.response.headers.get("Sec-WebSocket-Extensions") is None, c.ws.response.headers
    c.send_audio(0, np.zeros(480, np.float32), 0)
    rel.check_ending(c.finish(), "a client that offered deflate")
    h.assert_healthy()


def test_compressed_frames_are_a_protocol_error_and_others_go_on(live_server, rel) -> None:
    h = live_server()
    bomb = _bomb()
    with rel.Streamer(h, seconds=2.0) as other:
        raw = rel.RawWs(h.port, extensions="permessage-deflate; client_max_window_bits")
        assert "sec-websocket-extensions" not in raw.headers, raw.response
        raw.send_text(json.dumps(rel.start_message()))
        op, ready = raw.read_frame()
        assert op == 1 and json.loads(ready)["type"] == "ready", ready
        try:
            for _ in range(50):  # 200 MiB once inflated, if anything inflated them
                raw.send_frame(bomb, opcode=2, rsv1=True)
        except OSError:
            pass  # closed under us: fine, the close frame is what we check
        events, code, reason = raw.read_until_close(10)
        assert code == 1002, (code, reason, events[-2:])
        raw.close()
        other.check(P99_MS)
    h.assert_healthy()
