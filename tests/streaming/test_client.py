"""End to end with the Python client on loopback: exact binaural output, notes, concurrency."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.live.engines import FakeReasoner
from livesense.live.server.app import ServerConfig, ServerThread
from livesense.live.server.client import (
    ClientError,
    ClientOptions,
    LiveClient,
    load_question_schedule,
    main,
    stream_file,
)
from livesense.live.server.protocol import StartConfig
from livesense.media.audio import read_audio

TOKEN = "tok"


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    cfg = ServerConfig(port=0, token=TOKEN, stats_interval_s=0.2)
    with ServerThread(cfg, reasoner=FakeReasoner(every=2)) as st:
        yield st


def offline(
    st: ServerThread, x: np.ndarray, speaker: Pose, listener: Pose | None = None
) -> np.ndarray:
    return DspBinauralRenderer(speaker, listener or Pose(), hrirs=st.server.dsp.hrirs).process(x)


def s16(x: np.ndarray) -> np.ndarray:
    return (np.clip(np.round(x * 32768), -32768, 32767) / 32768).astype(np.float32)


def test_stream_file_end_to_end(server: ServerThread, make_clip, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    n = 48000 + 217  # not a whole number of packets
    audio = (0.05 * rng.standard_normal((1, n))).astype(np.float32)
    clip = make_clip("talk.mp4", seconds=n / 48000, audio_data=audio, fps=10)
    questions = tmp_path / "q.txt"
    questions.write_text("0.2 what colour is it?\n0.5 and now?\n")
    out = tmp_path / "out"
    sp, li = Pose((0.5, 1.2, 0.2)), Pose((0.0, 0.0, 0.0))
    rc = main(
        [str(clip), "--url", server.url, "--fast", "--fps", "10", "--out", str(out),
         "--questions", str(questions), "--speaker-pose", "0.5,1.2,0.2"]
    )  # fmt: skip
    assert rc == 0
    y = read_audio(out / "binaural.wav", 48000, channels=2)
    x = read_audio(clip, 48000)[0]  # what the client decoded and sent
    assert y.shape == (2, x.shape[0])
    ref = offline(server, s16(x), sp, li)
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


def test_concurrent_sessions_get_their_own_output(server: ServerThread) -> None:
    """Several sessions with different poses and formats at once: no cross-talk."""
    rng = np.random.default_rng(1)
    poses = [Pose((1.0, -1.0, 0.0)), Pose((0.2, 2.0, 0.5)), Pose((-1.5, 0.3, 0.0)), Pose((3, 0, 1))]
    fmts = ["s16le", "f32le", "s16le", "f32le"]
    xs = [(0.05 * rng.standard_normal(480 * 40)).astype(np.float32) for _ in poses]

    async def one(x: np.ndarray, sp: Pose, fmt: str) -> np.ndarray:
        async with LiveClient(server.url, StartConfig(format=fmt, speaker=sp)) as c:
            for i in range(0, x.shape[0], 480):
                await c.send_audio(x[i : i + 480])
                await asyncio.sleep(0.001)
            await c.stop()
            return c.result().audio

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(
            *(one(x, p, f) for x, p, f in zip(xs, poses, fmts, strict=True))
        )

    outs = asyncio.run(run())
    for x, sp, fmt, y in zip(xs, poses, fmts, outs, strict=True):
        if fmt == "s16le":
            assert np.abs(y - offline(server, s16(x), sp)).max() <= 1.01 / 32768
        else:
            assert np.abs(y - offline(server, x, sp)).max() <= 1e-6
    assert np.abs(outs[0] - outs[1][:, : outs[0].shape[1]]).max() > 0.01  # really different


def test_pose_updates_and_orbit(server: ServerThread, make_clip, tmp_path: Path) -> None:
    clip = make_clip("tone.wav", seconds=0.5, video=False)
    opts = ClientOptions(fast=True, orbit_s=1.0, speaker=Pose((1.0, 0.0, 0.0)), format="f32le")
    res = asyncio.run(stream_file(clip, server.url, opts))
    x = read_audio(clip, 48000)[0]
    assert res.audio.shape == (2, x.shape[0]) and res.done is not None
    left, right = res.audio[:, :12000], res.audio[:, 12000:]
    # The speaker moves from the front to the right: the right ear gets louder than the left.
    assert np.sum(right[1] ** 2) > 2 * np.sum(right[0] ** 2)
    assert np.sum(left[1] ** 2) < np.sum(right[1] ** 2)


def test_real_time_pacing(server: ServerThread, make_clip) -> None:
    clip = make_clip("short.wav", seconds=0.3, video=False)
    t0 = asyncio.run(asyncio.sleep(0, result=__import__("time").perf_counter()))
    res = asyncio.run(stream_file(clip, server.url, ClientOptions()))
    elapsed = __import__("time").perf_counter() - t0
    assert elapsed >= 0.28 and res.audio.shape[1] == round(0.3 * 48000)
    assert max(res.latencies_ms) < 200


def test_client_errors_are_one_line(
    server: ServerThread, make_clip, tmp_path: Path, capsys
) -> None:
    clip = make_clip("ok.wav", seconds=0.1, video=False)
    bad_url = server.url.replace(f"token={TOKEN}", "token=nope")
    assert main([str(clip), "--url", bad_url, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "authentication rejected" in err and err.count("\n") == 1 and "nope" not in err
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main([str(clip), "--url", f"ws://127.0.0.1:{port}/v1/session"]) == 2
    assert "cannot connect" in capsys.readouterr().err
    (tmp_path / "junk.mp4").write_bytes(b"not media")
    assert main([str(tmp_path / "junk.mp4"), "--url", server.url]) == 2
    assert "junk.mp4" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.wav"), "--url", server.url]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([str(clip), "--url", "http://x"]) == 2
    assert "--url" in capsys.readouterr().err


def test_rejected_session_is_a_client_error(server: ServerThread) -> None:
    async def run() -> None:
        c = LiveClient(server.url, StartConfig())
        c.start = StartConfig(sample_rate=44100)  # type: ignore[call-arg]
        await c.connect()

    with pytest.raises(ClientError, match="unsupported"):
        asyncio.run(run())


def test_question_files(tmp_path: Path) -> None:
    p = tmp_path / "q.json"
    p.write_text(json.dumps([{"t": 2, "text": "b"}, {"time": 1, "question": "a", "id": "x"}]))
    assert load_question_schedule(p) == [(1.0, "a", "x"), (2.0, "b", "q1")]
    p.write_text('{"t": 1, "text": "a"}\n{"t": 0.5, "text": "b"}\n')
    assert [q[1] for q in load_question_schedule(p)] == ["b", "a"]
    p.write_text("soon what?\n")
    with pytest.raises(Exception, match="q.json"):
        load_question_schedule(p)
