"""The live-session server: HTTP, auth, origin, limits, bad input, degrade, isolation."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
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

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.live.engines import DspEngine, Engines, FakeReasoner, NeuralEngine
from livesense.live.server.app import ServerThread
from livesense.live.server.config import ServerConfig, SessionLimits
from livesense.live.server.protocol import (
    Kind,
    StartConfig,
    pack_frame,
    unpack_frame,
)
from livesense.models.binaural import random_model

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")


@pytest.fixture
def server() -> Iterator[ServerThread]:
    engines = Engines(reasoner=FakeReasoner(every=1))
    with ServerThread(ServerConfig(port=0, token=TOKEN), engines) as st:
        yield st


# ----------------------------------------------------------------------------- HTTP side


def test_healthz_and_static_files(server: ServerThread) -> None:
    status, body, ctype = http(server, "/healthz")
    assert status == 200 and ctype.startswith("application/json")
    assert json.loads(body) == {"ok": True, "sessions": 0, "max_sessions": 8, "protocol": 1}
    status, body, ctype = http(server, "/")
    assert status == 200 and ctype.startswith("text/html") and b"<html" in body.lower()
    status, _, ctype = http(server, "/app.js")
    assert status == 200 and ctype.startswith("text/javascript")
    for bad in ("/nope.js", "/../server/app.py", "/%2e%2e/cli/__init__.py", "/.hidden"):
        assert http(server, bad)[0] == 404


@pytest.mark.parametrize("query", ["?token=", "?token=wrong", "?token=secret-tokenX"])
def test_bad_token_is_http_401(server: ServerThread, query: str) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/session{query}"
    with pytest.raises(InvalidStatus) as e:
        connect(url)
    assert e.value.response.status_code == 401


@pytest.mark.parametrize("token", [None, "", "wrong", 12, "\ud800"])
def test_without_a_url_token_start_must_carry_it(server: ServerThread, token: Any) -> None:
    url = f"ws://127.0.0.1:{server.port}/v1/session?tok={TOKEN}"
    with connect(url) as ws:
        start = StartConfig().to_json()
        if token is not None:
            start["token"] = token
        ws.send(json.dumps(start))
        err = json.loads(ws.recv(timeout=5))
        assert err["type"] == "error" and err["code"] == "unauthorized", err
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008
    with connect(f"ws://127.0.0.1:{server.port}/v1/session") as ws:
        ws.send(json.dumps({**StartConfig().to_json(), "token": TOKEN}))
        assert json.loads(ws.recv(timeout=5))["type"] == "ready"
        ws.send(json.dumps({"type": "stop"}))
        assert recv_until(ws, is_type("done"))[-1]["samples_in"] == 0


def test_no_auth_accepts_without_token() -> None:
    st = ServerThread(ServerConfig(port=0, token=None))
    with st:
        ws, ready = open_session(st)
        assert st.url.endswith("/v1/session")
        ws.close()


def test_origin_allowlist(server: ServerThread) -> None:
    with pytest.raises(InvalidStatus) as e:
        connect(server.url, origin="http://evil.example")  # type: ignore[arg-type]
    assert e.value.response.status_code == 403
    ws, _ = open_session(server, origin=f"http://localhost:{server.port}")  # type: ignore[arg-type]
    ws.close()
    with server_thread(allow_origins=("https://app.example",)) as st:
        ws, _ = open_session(st, origin="https://app.example")  # type: ignore[arg-type]
        ws.close()


# ----------------------------------------------------------------------------- limits


def test_session_limit_closes_with_1013_and_a_vanished_client_frees_its_slot() -> None:
    with server_thread(max_sessions=1) as st:
        ws1, _ = open_session(st)
        ws2 = connect(st.url)
        with pytest.raises(ConnectionClosed) as e:
            ws2.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1013
        assert "full" in e.value.rcvd.reason
        ws1.send(audio_frame(0, np.zeros(480, np.float32)))
        ws1.socket.shutdown(socket.SHUT_RDWR)  # vanish without a closing handshake
        ws1.socket.close()
        end = time.monotonic() + 3
        while json.loads(http(st, "/healthz")[1])["sessions"] and time.monotonic() < end:
            time.sleep(0.02)
        assert json.loads(http(st, "/healthz")[1])["sessions"] == 0
        ws3, _ = open_session(st)
        ws3.close()


@pytest.mark.parametrize(
    ("first", "code"),
    [
        (json.dumps({"type": "start", "audio": {"sample_rate": 44100}}), "unsupported"),
        ("not json", "bad_json"),
        (json.dumps({"type": "ask", "text": "hi"}), "not_started"),
        (b"\x01" * 20, "not_started"),
    ],
)
def test_bad_start_gets_error_and_close(server: ServerThread, first: Any, code: str) -> None:
    ws = connect(server.url)
    ws.send(first)
    msg = json.loads(ws.recv(timeout=5))
    assert msg["type"] == "error" and msg["code"] == code and msg["message"]
    with pytest.raises(ConnectionClosed) as e:
        ws.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1008


def test_start_and_idle_time_limits() -> None:
    with server_thread(start_timeout_s=0.2, idle_timeout_s=0.3, max_session_s=60) as st:
        ws = connect(st.url)
        assert json.loads(ws.recv(timeout=5))["code"] == "start_timeout"
        ws, _ = open_session(st)
        msgs = recv_until(ws, is_type("error"), 5)
        assert msgs[-1]["code"] == "idle_timeout"
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008


def test_time_limit_error_event() -> None:
    with server_thread(max_session_s=0.3, idle_timeout_s=5) as st:
        ws, _ = open_session(st)
        msgs = recv_until(ws, is_type("error"), 5)
        assert msgs[-1]["code"] == "time_limit"


# ----------------------------------------------------------------------------- bad input


def test_bad_input_gets_errors_and_the_session_survives() -> None:
    limits = SessionLimits(max_frame_bytes=2000)
    with server_thread(limits=limits) as st:
        ws, _ = open_session(st, StartConfig(video=True, reasoning=True))
        x = (0.05 * np.random.default_rng(1).standard_normal(480 * 4)).astype(np.float32)
        ws.send(audio_frame(0, x[:480]))
        cases: list[tuple[Any, str]] = [
            ("{oops", "bad_json"),
            (json.dumps([1, 2]), "bad_message"),
            (json.dumps({"type": "dance"}), "unknown_type"),
            (json.dumps({"type": "start"}), "bad_message"),
            (json.dumps({"type": "pose", "speaker": {"position": [1, "a", 0]}}), "bad_message"),
            (b"\x01\x00", "bad_frame"),
            (bytes([7]) + bytes(15) + b"abc", "unknown_kind"),
            (pack_frame(Kind.AUDIO_OUT, 0, 0, bytes(8)), "unknown_kind"),
            (pack_frame(Kind.AUDIO_IN, 1, 0, b"\x00\x01\x02"), "bad_size"),
            (pack_frame(Kind.AUDIO_IN, 1, 0, bytes(2 * 481)), "bad_size"),
            (audio_frame(0, x[:480]), "out_of_order"),  # seq 0 again
            (pack_frame(Kind.VIDEO_IN, 0, 0, b"\xff" * 3000), "too_large"),
            (pack_frame(Kind.VIDEO_IN, 1, 100, b"not a jpeg"), "bad_image"),
            (pack_frame(Kind.VIDEO_IN, 2, 200_000, jpeg()), "note"),
            (pack_frame(Kind.VIDEO_IN, 3, 100_000, jpeg()), "out_of_order"),
        ]
        seen: list = []
        for msg, code in cases:
            ws.send(msg)
            seen += recv_until(
                ws, lambda m: isinstance(m, dict) and m.get("type") in ("error", "note"), 5
            )
            got = seen[-1]
            assert got.get("code", got["type"]) == code, (msg[:40], got)
        for i in (1, 2, 3):  # the session still works: the rest of the audio, in order
            ws.send(audio_frame(i, x[480 * i : 480 * (i + 1)], pts=480 * i))
        y, events = finish(ws, seen)
        assert y.shape == (2, 480 * 4)
        assert events[-1]["samples_in"] == events[-1]["samples_out"] == 480 * 4
        stats = [e for e in events if e["type"] == "stats"][-1]
        assert stats["video"]["bad_frames"] == 1 and stats["errors"] >= 12


def test_video_disabled_and_reasoning_disabled(server: ServerThread) -> None:
    ws, ready = open_session(server)
    assert ready["reasoner"] is None
    ws.send(pack_frame(Kind.VIDEO_IN, 0, 0, jpeg()))
    assert recv_until(ws, is_type("error"))[-1]["code"] == "video_disabled"
    ws.send(json.dumps({"type": "ask", "text": "what do you see?", "id": "a"}))
    assert recv_until(ws, is_type("error"))[-1]["code"] == "reasoning_disabled"
    finish(ws)


def test_too_many_errors_closes_the_session() -> None:
    with server_thread(max_errors=5) as st:
        ws, _ = open_session(st)
        with pytest.raises(ConnectionClosed) as e:
            for _ in range(50):
                ws.send("{")
                time.sleep(0.005)
            recv_until(ws, lambda m: False, 5)
        assert e.value.rcvd is not None and e.value.rcvd.code == 1008


def test_ask_rate_limit(server: ServerThread) -> None:
    ws, _ = open_session(server, StartConfig(reasoning=True))
    for i in range(8):
        ws.send(json.dumps({"type": "ask", "text": f"q{i}", "id": str(i)}))
    msgs = recv_until(ws, is_type("error"))
    assert msgs[-1]["code"] == "rate_limited"
    answers = [m for m in msgs if isinstance(m, dict) and m["type"] == "answer"]
    assert [a["id"] for a in answers] == [str(i) for i in range(len(answers))]
    finish(ws)


def test_gap_in_sequence_is_concealed_and_reported(server: ServerThread) -> None:
    ws, _ = open_session(server)
    x = np.full(480, 0.1, np.float32)
    ws.send(audio_frame(0, x))
    for seq in range(2, 6):  # seq 1 never arrives: concealed once 4 newer packets are here
        ws.send(audio_frame(seq, x, pts=480 * seq))
    seen = recv_until(ws, is_type("error"))
    assert seen[-1]["code"] == "seq_gap" and "1 audio packet(s) missing" in seen[-1]["message"]
    ws.send(audio_frame(7, x, pts=480 * 7))  # seq 6 is missing at the end: concealed at stop
    y, events = finish(ws, seen)
    assert y.shape == (2, 8 * 480)  # the missing packets are concealed in place
    assert [e["code"] for e in events if e["type"] == "error"] == ["seq_gap", "seq_gap"]
    assert events[-1]["samples_in"] == 8 * 480
    assert events[-2]["audio"]["packets"]["lost"] == 2


def test_swapped_packets_within_the_reorder_window_are_all_played(server: ServerThread) -> None:
    ws, _ = open_session(server)
    rng = np.random.default_rng(0)
    packets = [np.round(rng.uniform(-0.5, 0.5, 480) * 32768) / 32768 for _ in range(6)]
    for seq in (0, 2, 1, 4, 5, 3):  # two swaps, one packet two places late
        ws.send(audio_frame(seq, packets[seq], pts=480 * seq))
    y, events = finish(ws)
    assert not [e for e in events if e["type"] == "error"]
    ref = DspEngine().create(DEFAULT_SPEAKER, DEFAULT_LISTENER, 48000)
    want = ref.step(np.concatenate(packets)[None].astype(np.float32))
    np.testing.assert_allclose(y, want, atol=1e-4)  # s16le output rounding
    assert events[-2]["audio"]["packets"]["lost"] == 0


def test_short_final_packet_and_pose_at_pts(server: ServerThread) -> None:
    """Exact output for a pose change at a given sample and a short last packet."""
    rng = np.random.default_rng(3)
    n = 480 * 20 + 123
    x = np.round(0.05 * rng.standard_normal(n) * 32768).astype(np.float32) / 32768
    sp0, sp1 = Pose((1.0, 1.0, 0.0)), Pose((-0.5, -2.0, 0.3))
    ws, _ = open_session(server, StartConfig(speaker=sp0))
    ws.send(json.dumps({"type": "pose", "pts": 4000, "speaker": {"position": [-0.5, -2, 0.3]}}))
    for seq, i in enumerate(range(0, n, 480)):
        ws.send(audio_frame(seq, x[i : i + 480], pts=i))
    y, _ = finish(ws)
    r = DspBinauralRenderer(sp0, Pose(), hrirs=server.server.engines.dsp.hrirs)  # type: ignore[attr-defined]
    r.set_speaker_pose(sp1, at_sample=4000)
    ref = r.step(x)
    assert y.shape == ref.shape == (2, n)
    assert np.abs(y - ref).max() <= 1.01 / 32768


# ----------------------------------------------------------------------------- engines


def _slow_neural_engine(seconds_per_evaluation: float) -> NeuralEngine:
    """A neural engine whose network sleeps on every evaluation (a model too big to keep up)."""
    model = random_model("tiny", seed=1)
    model.register_forward_pre_hook(lambda module, args: time.sleep(seconds_per_evaluation))
    return NeuralEngine(model=model)


def test_neural_unavailable_falls_back_to_dsp(server: ServerThread) -> None:
    ws, ready = open_session(server, StartConfig(renderer="neural"))
    assert ready["renderer"] == "dsp"
    assert recv_until(ws, is_type("error"))[-1]["code"] == "renderer_unavailable"
    ws.send(audio_frame(0, np.full(480, 0.1, np.float32)))  # sent back after the error
    y, _ = finish(ws)
    assert y.shape == (2, 480)


def test_slow_neural_renderer_degrades_to_dsp_without_losing_samples() -> None:
    """Misses degrade the session through its FallbackRenderer: crossfaded, nothing lost."""
    limits = SessionLimits(miss_window=20, miss_degrade=5)
    with server_thread(renderers={"neural": _slow_neural_engine(0.05)}, limits=limits) as st:
        ws, ready = open_session(st, StartConfig(renderer="neural"))
        assert ready["renderer"] == "neural" and ready["latency_ms"] == 8.0  # tiny: 384 samples
        n = 480 * 60
        x = np.full(n, 0.01, np.float32)
        for seq, i in enumerate(range(0, n, 480)):
            ws.send(audio_frame(seq, x[i : i + 480], pts=i))
        y, events = finish(ws)
        assert y.shape == (2, n)
        assert any(e.get("code") == "degraded" for e in events)
        final = [e for e in events if e["type"] == "stats"][-1]
        assert final["degraded"] and final["renderer"] == "dsp"
        assert final["audio"]["deadline_misses"] >= 5
        # No silent gap at the switch (a hard switch would pad zeros) ...
        silent = np.abs(y).max(axis=0) == 0
        runs = np.diff(np.flatnonzero(np.diff(np.r_[0, silent[4000:].astype(int), 0])))[::2]
        assert runs.size == 0 or runs.max() < 48
        # ... and once the crossfade is over, the output is the DSP render, sample-aligned.
        ref = DspBinauralRenderer(hrirs=st.server.engines.dsp.hrirs).process(x)
        assert np.abs(y[:, -4800:] - ref[:, -4800:]).max() <= 2.01 / 32768


# ----------------------------------------------------------------------------- isolation


def _audio_latencies(st: ServerThread, seconds: float, results: dict) -> None:
    """A well-behaved real-time session: p99 of send -> binaural receipt, in ms."""
    ws, _ = open_session(st)
    lat: list[float] = []
    sent: dict[int, float] = {}

    def reader() -> None:
        try:
            while True:
                m = ws.recv(timeout=10)
                if isinstance(m, bytes):
                    f = unpack_frame(m)
                    lat.append(time.perf_counter() - sent[f.pts])
        except (ConnectionClosed, TimeoutError):
            pass

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    t0 = time.perf_counter()
    for seq in range(int(seconds * 100)):
        time.sleep(max(0.0, t0 + seq * 0.01 - time.perf_counter()))
        sent[480 * seq] = time.perf_counter()
        ws.send(audio_frame(seq, np.zeros(480, np.float32), pts=480 * seq))
    ws.send(json.dumps({"type": "stop"}))
    t.join(10)
    results["p99_ms"] = 1000 * float(np.percentile(lat, 99))
    results["n"] = len(lat)


def test_slow_reasoner_and_non_reading_client_do_not_stall_other_sessions() -> None:
    limits = SessionLimits(max_out_backlog_s=0.5)
    with server_thread(reasoner=FakeReasoner(every=1, delay=0.3), limits=limits) as st:
        # A session whose reasoner takes 300 ms per frame, flooded with frames.
        slow, _ = open_session(st, StartConfig(video=True, reasoning=True))
        # A client that sends audio as fast as it can and never reads.
        deaf = DeafClient(st)
        results: dict = {}
        good = threading.Thread(target=_audio_latencies, args=(st, 1.5, results))
        good.start()
        img = jpeg()
        deaf_closed = False
        for i in range(150):
            slow.send(pack_frame(Kind.VIDEO_IN, i, i * 10_000, img))
            if not deaf_closed:
                try:
                    for k in range(10):
                        seq = 10 * i + k
                        deaf.send(audio_frame(seq, np.zeros(480, np.float32), "f32le", 480 * seq))
                except (ConnectionClosed, TimeoutError, OSError):
                    deaf_closed = True
            time.sleep(0.01)
        good.join(20)
        assert results["n"] == 150
        assert results["p99_ms"] < 60, results
        # The non-reading client was cut off; the slow session dropped (and counted) frames.
        end = time.monotonic() + 5
        while json.loads(http(st, "/healthz")[1])["sessions"] > 1 and time.monotonic() < end:
            time.sleep(0.05)
        assert json.loads(http(st, "/healthz")[1])["sessions"] == 1
        y, events = finish(slow)
        final = [e for e in events if e["type"] == "stats"][-1]
        assert final["frames_dropped"] > 100
        assert final["video"]["frames_processed"] < 20


def test_stats_are_sent_periodically() -> None:
    with server_thread(stats_interval_s=0.1) as st:
        ws, _ = open_session(st)
        ws.send(audio_frame(0, np.zeros(480, np.float32)))
        msgs = recv_until(ws, is_type("stats"), 5)
        s = msgs[-1]
        for key in ("latency_ms", "rtf", "frames_dropped", "evaluations", "renderer", "degraded"):
            assert key in s
        finish(ws)


def test_server_config_replace_keeps_limits() -> None:
    cfg = replace(ServerConfig(), max_sessions=2)
    assert cfg.limits.chunk_samples == 480 and cfg.max_sessions == 2
