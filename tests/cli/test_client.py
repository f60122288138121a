"""``livesense client`` end to end on loopback: exact binaural output, transcript, one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import DEFAULT_SPEAKER, Pose
from livesense.cli import main
from livesense.live.engines import Engines
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
from livesense.media.audio import read_audio

TOKEN = "tok"  # the client_server fixture's


def offline(x: np.ndarray, speaker: Pose, listener: Pose | None = None) -> np.ndarray:
    """The DSP render of ``x`` (the shipped HRIR set, as the server's DSP engine)."""
    return DspBinauralRenderer(speaker, listener or Pose()).process(x)


def s16(x: np.ndarray) -> np.ndarray:
    """``x`` as it arrives after the wire's s16le encoding."""
    return decode_audio(encode_audio(x, "s16le"), "s16le", 1)[0]


def test_stream_file_end_to_end(client_server: ServerThread, make_clip, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 48000 + 217  # not a whole number of packets
    audio = (0.05 * rng.standard_normal((1, n))).astype(np.float32)
    clip = make_clip("talk.mp4", seconds=n / 48000, audio_data=audio, fps=10)
    questions = tmp_path / "q.txt"
    questions.write_text("0.2 what colour is it?\n0.5 and now?\n")
    out = tmp_path / "out"
    sp, li = Pose((0.5, 1.2, 0.2)), Pose((0.0, 0.0, 0.0))
    rc = main(
        ["client", str(clip), "--url", client_server.url, "--fast", "--fps", "10", "--out", str(out),
         "--questions", str(questions), "--speaker-pose", "0.5,1.2,0.2"]
    )  # fmt: skip
    assert rc == 0
    y = read_audio(out / "binaural.wav", 48000, channels=2)
    x = read_audio(clip, 48000)[0]  # what the client decoded and sent
    assert y.shape == (2, x.shape[0])
    ref = offline(s16(x), sp, li)
    assert np.abs(y - ref).max() <= 2.01 / 32768  # s16 in and out (+ WAV rounding)
    events = [json.loads(line) for line in (out / "transcript.jsonl").read_text().splitlines()]
    notes = [e for e in events if e["type"] == "note"]
    answers = [e for e in events if e["type"] == "answer"]
    assert notes and all(n["text"].startswith("frame ") for n in notes)  # fast: some dropped
    assert [a["id"] for a in answers] == ["q1", "q2"]
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples_sent"] == stats["samples_received"] == x.shape[0]
    assert stats["done"]["samples_out"] == x.shape[0]
    assert stats["server"]["video"]["frames_received"] >= 9


def test_client_errors_are_one_line(
    client_server: ServerThread, make_clip, tmp_path: Path, capsys
) -> None:
    clip = make_clip("ok.wav", seconds=0.1, video=False)
    bad_url = client_server.url.replace(f"token={TOKEN}", "token=nope")
    assert main(["client", str(clip), "--url", bad_url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "authentication rejected" in err and err.count("\n") == 1 and "nope" not in err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["client", str(clip), "--url", f"ws://127.0.0.1:{port}/v1/session"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    (tmp_path / "junk.mp4").write_bytes(b"not media")
    assert main(["client", str(tmp_path / "junk.mp4"), "--url", client_server.url]) == 2
    assert "junk.mp4" in capsys.readouterr().err
    assert main(["client", str(tmp_path / "missing.wav"), "--url", client_server.url]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["client", str(clip), "--url", "http://x"]) == 2
    assert "--url" in capsys.readouterr().err


# ------------------------------------------------------------------ abnormal ends keep the output


class FakeServer:
    """A scripted live server in a thread: it answers ``start`` with ``ready``, then runs
    ``script(ws, fmt)`` (to die, close with a code, or shut down after ``done``)."""

    def __init__(self, script: Callable[[ServerConnection, str], Awaitable[None]]):
        self.script = script
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_until_complete, args=(self._main(),))
        self._up = threading.Event()
        self.port = 0

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/session"

    async def _handler(self, ws: ServerConnection) -> None:
        start = json.loads(await ws.recv())
        ready = {"type": "ready", "session": "fake", "chunk_samples": 480, "latency_ms": 0.0,
                 "sample_rate": 48000, "format": start["audio"]["format"], "renderer": "dsp"}  # fmt: skip
        await ws.send(json.dumps(ready))
        with contextlib.suppress(ConnectionClosed):
            await self.script(ws, start["audio"]["format"])

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with serve(self._handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._up.set()
            await self._stop.wait()

    def __enter__(self) -> FakeServer:
        self._thread.start()
        assert self._up.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


async def echo(ws: ServerConnection, fmt: str, packets: int) -> np.ndarray:
    """Send back ``packets`` audio packets as stereo (left = input, right = -input)."""
    got = []
    while len(got) < packets:
        msg = await ws.recv()
        if isinstance(msg, bytes):
            f = unpack_frame(msg)
            x = decode_audio(f.payload, fmt, 1)
            got.append(x[0])
            y = np.concatenate([x, -x])
            await ws.send(pack_frame(Kind.AUDIO_OUT, f.seq, f.pts, encode_audio(y, fmt)))
    await ws.send(json.dumps({"type": "stats", "audio": {"samples_in": 480 * packets}}))
    return np.concatenate(got)


async def dies(ws: ServerConnection, fmt: str) -> None:
    await echo(ws, fmt, 3)
    await asyncio.wait_for(await ws.ping(), 5)  # the pong: the client has the frames before it
    ws.transport.abort()  # the process dies: no close frame (the client sees 1006)


async def fails(ws: ServerConnection, fmt: str) -> None:
    await echo(ws, fmt, 3)
    await ws.send(json.dumps({"type": "error", "code": "internal", "message": "renderer failed"}))
    await ws.close(1011, "internal error")


async def polices(ws: ServerConnection, fmt: str) -> None:
    await echo(ws, fmt, 3)
    msg = {"type": "error", "code": "rate_limited", "message": "too many poses"}
    await ws.send(json.dumps(msg))
    await ws.close(1008, "too many protocol errors")


async def shuts_down(ws: ServerConnection, fmt: str) -> None:
    await echo(ws, fmt, 3)
    await ws.send(json.dumps({"type": "done", "samples_in": 1440, "samples_out": 1440}))
    await ws.close(1001, "server shutting down")


def saved(out: Path) -> tuple[np.ndarray, list[dict], dict]:
    y = read_audio(out / "binaural.wav", 48000, channels=2)
    events = [json.loads(line) for line in (out / "transcript.jsonl").read_text().splitlines()]
    return y, events, json.loads((out / "stats.json").read_text())


@pytest.mark.parametrize(
    ("script", "code", "reason", "says"),
    [
        (dies, 1006, "", "connection lost"),
        (fails, 1011, "internal error", "internal: renderer failed"),
        (polices, 1008, "too many protocol errors", "rate_limited: too many poses"),
    ],
)
def test_abnormal_end_keeps_what_arrived(
    script, code: int, reason: str, says: str, make_clip, tmp_path: Path, capsys
) -> None:
    clip = make_clip("a.wav", seconds=1.0, video=False)
    out = tmp_path / "out"
    with FakeServer(script) as fake:
        rc = main(["client", str(clip), "--url", fake.url, "--fast", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert says in err and f"close {code}" in err and str(out) in err
    y, events, stats = saved(out)
    x = s16(read_audio(clip, 48000)[0])[: 3 * 480]
    assert y.shape == (2, 3 * 480)
    assert np.abs(y[0] - x).max() <= 1.01 / 32768 and np.abs(y[1] + x).max() <= 1.01 / 32768
    assert stats["samples_received"] == 3 * 480 and stats["samples_sent"] >= 3 * 480
    assert stats["close"] == {"code": code, "reason": reason}
    assert stats["ended_normally"] is False and stats["done"] is None
    assert stats["server"] == {"type": "stats", "audio": {"samples_in": 1440}}
    assert says in stats["error"]
    assert [e["type"] for e in events] == ([] if script is dies else ["error"])
    assert stats["errors"] == events


def test_shutdown_after_done_is_a_normal_end(make_clip, tmp_path: Path, capsys) -> None:
    clip = make_clip("a.wav", seconds=1.0, video=False)
    out = tmp_path / "out"
    with FakeServer(shuts_down) as fake:
        rc = main(["client", str(clip), "--url", fake.url, "--fast", "--out", str(out)])
    assert rc == 0
    captured = capsys.readouterr()
    assert "error:" not in captured.err and "server shutting down" in captured.err
    y, _, stats = saved(out)
    assert y.shape == (2, 1440) and stats["ended_normally"] is True
    assert stats["close"] == {"code": 1001, "reason": "server shutting down"}
    assert stats["done"]["samples_out"] == 1440 and stats["error"] is None


def test_time_limit_1008_keeps_the_partial_output(make_clip, tmp_path: Path, capsys) -> None:
    """A real server's time limit: error event + 1008 while the client is still sending."""
    clip = make_clip("a.wav", seconds=2.0, video=False)
    out = tmp_path / "out"
    cfg = ServerConfig(port=0, token=TOKEN, renderer="dsp", max_session_s=0.3)
    with ServerThread(cfg, Engines()) as st:
        rc = main(["client", str(clip), "--url", st.url, "--no-video", "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "close 1008" in err and "time_limit: session time limit" in err
    y, events, stats = saved(out)
    assert stats["close"] == {"code": 1008, "reason": "session time limit"}
    assert [e["code"] for e in stats["errors"]] == ["time_limit"]
    assert 0 < y.shape[1] == stats["samples_received"] < 2 * 48000
    ref = offline(s16(read_audio(clip, 48000)[0]), DEFAULT_SPEAKER)[:, : y.shape[1]]
    assert np.abs(y - ref).max() <= 2.01 / 32768  # what arrived is the real render
    assert events == stats["errors"]


def test_server_full_1013_is_one_error_line(make_clip, tmp_path: Path, capsys) -> None:
    clip = make_clip("a.wav", seconds=0.1, video=False)
    cfg = ServerConfig(port=0, token=TOKEN, renderer="dsp", max_sessions=1)
    with ServerThread(cfg, Engines()) as st, ws_connect(st.url) as first:
        first.send(json.dumps(StartConfig().to_json()))
        assert json.loads(first.recv(timeout=5))["type"] == "ready"
        rc = main(["client", str(clip), "--url", st.url, "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "close 1013" in err and "server full" in err
    stats = json.loads((tmp_path / "o" / "stats.json").read_text())
    assert stats["close"]["code"] == 1013 and stats["session"] is None


def test_ctrl_c_sends_stop_saves_and_exits_130(
    client_server: ServerThread, make_clip, tmp_path: Path, capsys
) -> None:
    clip = make_clip("a.wav", seconds=3.0, video=False)
    out = tmp_path / "out"
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        rc = main(["client", str(clip), "--url", client_server.url, "--out", str(out)])
    finally:
        timer.cancel()
    assert rc == 130
    err = capsys.readouterr().err
    assert err.startswith("interrupted") and err.count("\n") == 1 and str(out) in err
    y, _, stats = saved(out)
    assert stats["interrupted"] is True and stats["ended_normally"] is True
    assert stats["close"]["code"] == 1000 and stats["done"] is not None
    assert 0.3 * 48000 < stats["samples_sent"] < 2 * 48000
    assert y.shape[1] == stats["samples_received"] == stats["samples_sent"]  # stop drained all


def test_real_server_drain_is_a_normal_end(make_clip, tmp_path: Path, capsys) -> None:
    """``LiveServer.drain()`` (SIGTERM on ``serve``) mid-stream: done + 1001 -> exit 0."""
    clip = make_clip("a.wav", seconds=2.0, video=False)
    out = tmp_path / "out"
    with ServerThread(ServerConfig(port=0, token=TOKEN, renderer="dsp"), Engines()) as st:
        drain = lambda: asyncio.run_coroutine_threadsafe(st.server.drain(), st.loop)  # noqa: E731
        timer = threading.Timer(0.4, drain)
        timer.start()
        rc = main(["client", str(clip), "--url", st.url, "--out", str(out)])
        timer.join()
    assert rc == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: ") and "close 1001: server shutting down" in err
    y, _, stats = saved(out)
    assert stats["ended_normally"] is True and stats["sent_all"] is False
    assert stats["close"] == {"code": 1001, "reason": "server shutting down"}
    assert 0 < y.shape[1] == stats["done"]["samples_out"] <= stats["samples_sent"] < 2 * 48000
