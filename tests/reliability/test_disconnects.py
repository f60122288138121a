"""Connections that vanish, never start, or do not answer the server's close: no slot stays
taken, the server goes on serving."""

from __future__ import annotations

import random
import socket
import time

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

STAGES = ["tcp", "half-handshake", "unstarted", "half-start", "started", "audio",
          "half-frame", "stopping"]  # fmt: skip


def _vanish(h, rel, stage: str, rng: random.Random) -> None:
    """Open a connection, take it to ``stage``, then reset it (no close handshake)."""
    if stage in ("tcp", "half-handshake"):
        s = socket.create_connection(("127.0.0.1", h.port), timeout=5)
        if stage == "half-handshake":
            s.sendall(b"GET /v1/session?token=" + rel.TOKEN.encode() + b" HTTP/1.1\r\nHost: x\r\n")
        rel.abort_socket(s)
        return
    if stage in ("half-start", "half-frame"):
        raw = rel.RawWs(h.port)
        if stage == "half-frame":
            raw.send_text('{"type":"start","renderer":"dsp"}')
            raw.read_frame()  # ready
        # a frame header announcing 100 kB, then a few bytes of it
        raw.sock.sendall(bytes([0x82, 0xFF]) + (100_000).to_bytes(8, "big") + b"\0\0\0\0abc")
        raw.close()
        return
    if stage == "unstarted":
        ws = connect(h.url, compression=None)
        rel.abort_socket(ws.socket)
        return
    c = rel.Client(h.url)
    assert c.ready is not None, c.events
    if stage in ("audio", "stopping"):
        x = np.zeros(480, np.float32)
        for seq in range(rng.randint(1, 60)):
            c.send_audio(seq, x, 480 * seq)
    if stage == "stopping":
        c.send_json({"type": "stop"})
    c.abort()


def test_abrupt_disconnects_free_every_slot(live_server, rel) -> None:
    h = live_server(max_sessions=4)
    rng = random.Random(14)
    for i in range(48):
        _vanish(h, rel, STAGES[i % len(STAGES)] if i < 16 else rng.choice(STAGES), rng)
        if i % 4 == 3:  # never more than max_sessions at once
            assert h.wait_sessions(0) == 0, f"after {i + 1} disconnects a slot is still taken"
    assert h.wait_sessions(0) == 0
    # Every slot is free again: max_sessions sessions at once run to done.
    clients = [rel.Client(h.url) for _ in range(4)]
    x = np.zeros(480, np.float32)
    for c in clients:
        assert c.ready is not None, c.events
        c.send_audio(0, x, 0)
    for k, c in enumerate(clients):
        e = c.finish()
        rel.check_ending(e, f"session {k} after the disconnects")
        assert e.done is not None and e.samples == 480, e.describe()
    h.assert_healthy()


def test_unstarted_connections_take_no_slot_and_are_capped_per_ip(live_server, rel) -> None:
    h = live_server(max_sessions=3, start_timeout_s=5.0, max_unstarted_per_ip=4)
    idle = [connect(h.url, compression=None) for _ in range(3)]  # never send start
    # They hold no session slot: two sessions start next to them (the 4th unstarted
    # connection for a moment, while each opens).
    sessions = [rel.Client(h.url) for _ in range(2)]
    for c in sessions:
        assert c.ready is not None, f"a session could not start: {c.events} {c.code} {c.reason}"
    idle.append(connect(h.url, compression=None))  # the 4th unstarted one is allowed ...
    with pytest.raises(TimeoutError):
        idle[-1].recv(timeout=0.3)
    fifth = connect(h.url, compression=None)  # ... the 5th is closed at once with 1008
    t0 = time.monotonic()
    with pytest.raises(ConnectionClosed) as e:
        while True:
            fifth.recv(timeout=2.0)  # an error event may come first
    assert e.value.rcvd is not None and e.value.rcvd.code == 1008, e.value
    assert time.monotonic() - t0 < 2.0, "not at once (the start timeout is 5 s)"
    for ws in idle:
        ws.close()
    for c in sessions:
        rel.check_ending(c.finish(), "a session next to unstarted connections")
    assert h.wait_sessions(0) == 0
    h.assert_healthy()


def test_a_server_side_close_frees_the_slot_at_once(live_server, rel) -> None:
    """A client that never answers the server's close (nor reads) does not keep the slot for
    the close timeout."""
    h = live_server(max_sessions=1, max_errors=5)
    raw = rel.RawWs(h.port)
    raw.send_text('{"type":"start","renderer":"dsp"}')
    op, ready = raw.read_frame()
    assert op == 1 and b'"ready"' in ready, ready
    for _ in range(5):  # max_errors: the server closes the session with 1008 ...
        raw.send_text("{")
    time.sleep(0.3)  # ... and waits in vain for our close frame; we keep the socket open
    assert h.wait_sessions(0, timeout=1.0) == 0, "the closed session is still counted"
    c = rel.Client(h.url)
    assert c.ready is not None, f"the slot is still taken: {c.events} close {c.code} {c.reason}"
    rel.check_ending(c.finish(), "the next session")
    events, code, _ = raw.read_until_close(5)
    assert code == 1008 and any(e.get("type") == "error" for e in events), (code, events)
    raw.close()
    h.assert_healthy()
