"""End to end with the Python client on loopback: exact binaural output, notes, concurrency."""

from __future__ import annotations

import asyncio
import json
import wave
from pathlib import Path

import numpy as np
import pytest

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.live.server.app import ServerThread
from livesense.live.server.client import ClientError, ClientOptions, LiveClient, stream_file
from livesense.live.server.protocol import StartConfig, decode_audio, encode_audio
from livesense.media.audio import read_audio

TOKEN = "tok"  # the client_server fixture's


def offline(x: np.ndarray, speaker: Pose, listener: Pose | None = None) -> np.ndarray:
    """The DSP render of ``x`` (the shipped HRIR set, as the server's DSP engine)."""
    return DspBinauralRenderer(speaker, listener or Pose()).process(x)


def s16(x: np.ndarray) -> np.ndarray:
    """``x`` as it arrives after the wire's s16le encoding."""
    return decode_audio(encode_audio(x, "s16le"), "s16le", 1)[0]


def test_concurrent_sessions_get_their_own_output(client_server: ServerThread) -> None:
    """Several sessions with different poses and formats at once: no cross-talk."""
    rng = np.random.default_rng(1)
    poses = [Pose((1.0, -1.0, 0.0)), Pose((0.2, 2.0, 0.5)), Pose((-1.5, 0.3, 0.0)), Pose((3, 0, 1))]
    fmts = ["s16le", "f32le", "s16le", "f32le"]
    xs = [(0.05 * rng.standard_normal(480 * 40)).astype(np.float32) for _ in poses]

    async def one(x: np.ndarray, sp: Pose, fmt: str) -> np.ndarray:
        async with LiveClient(client_server.url, StartConfig(format=fmt, speaker=sp)) as c:
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
            assert np.abs(y - offline(s16(x), sp)).max() <= 1.01 / 32768
        else:
            assert np.abs(y - offline(x, sp)).max() <= 1e-6
    assert np.abs(outs[0] - outs[1][:, : outs[0].shape[1]]).max() > 0.01  # really different


def test_pose_updates_and_orbit(client_server: ServerThread, make_clip, tmp_path: Path) -> None:
    clip = make_clip("tone.wav", seconds=0.5, video=False)
    opts = ClientOptions(fast=True, orbit_s=1.0, speaker=Pose((1.0, 0.0, 0.0)), format="f32le")
    res = asyncio.run(stream_file(clip, client_server.url, opts))
    x = read_audio(clip, 48000)[0]
    assert res.audio.shape == (2, x.shape[0]) and res.done is not None
    left, right = res.audio[:, :12000], res.audio[:, 12000:]
    # The speaker moves from the front to the right: the right ear gets louder than the left.
    assert np.sum(right[1] ** 2) > 2 * np.sum(right[0] ** 2)
    assert np.sum(left[1] ** 2) < np.sum(right[1] ** 2)


def test_real_time_pacing(client_server: ServerThread, make_clip) -> None:
    clip = make_clip("short.wav", seconds=0.3, video=False)
    t0 = asyncio.run(asyncio.sleep(0, result=__import__("time").perf_counter()))
    res = asyncio.run(stream_file(clip, client_server.url, ClientOptions()))
    elapsed = __import__("time").perf_counter() - t0
    assert elapsed >= 0.28 and res.audio.shape[1] == round(0.3 * 48000)
    assert max(res.latencies_ms) < 200


def test_rejected_session_is_a_client_error(client_server: ServerThread) -> None:
    async def run() -> None:
        c = LiveClient(client_server.url, StartConfig())
        c.start = StartConfig(sample_rate=44100)  # type: ignore[call-arg]
        await c.connect()

    with pytest.raises(ClientError, match="unsupported"):
        asyncio.run(run())


def test_rejected_start_is_returned_and_saved(
    client_server: ServerThread, make_clip, tmp_path: Path
) -> None:
    """A bad ``start`` (error event + 1008): the result says why and stats.json keeps it."""
    clip = make_clip("a.wav", seconds=0.2, video=False)
    opts = ClientOptions(fast=True, renderer="nope")
    res = asyncio.run(stream_file(clip, client_server.url, opts, out=tmp_path / "out"))
    assert res.close_code == 1008 and not res.ended_normally and res.ready == {}
    assert [e["code"] for e in res.errors] == ["bad_message"]
    assert res.error is not None and res.error.startswith("session rejected by the server")
    assert "close 1008" in res.error and "renderer must be one of" in res.error
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert stats["close"]["code"] == 1008 and stats["error"] == res.error
    assert stats["errors"] == res.errors and stats["samples_received"] == 0
    with wave.open(str(tmp_path / "out" / "binaural.wav")) as w:  # written, empty
        assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 48000, 0)


def test_cancelled_stream_still_saves_what_arrived(
    client_server: ServerThread, make_clip, tmp_path: Path
) -> None:
    """Cancelled mid-stream (a second Ctrl-C): CancelledError, and the output is on disk."""
    clip = make_clip("a.wav", seconds=3.0, video=False)
    out = tmp_path / "out"

    async def run() -> None:
        task = asyncio.create_task(stream_file(clip, client_server.url, ClientOptions(), out=out))
        await asyncio.sleep(0.5)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(run())
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interrupted"] is True and stats["ended_normally"] is False
    y = read_audio(out / "binaural.wav", 48000, channels=2)
    assert 0.2 * 48000 < y.shape[1] == stats["samples_received"] <= stats["samples_sent"]


def test_token_argument_overrides_the_url_token(client_server: ServerThread) -> None:
    bad = client_server.url.replace(f"token={TOKEN}", "token=nope")

    async def run(url: str, token: str | None) -> str:
        async with LiveClient(url, StartConfig(), token) as c:
            return c.ready["type"]

    assert asyncio.run(run(client_server.url, None)) == "ready"  # the URL's ?token=
    assert asyncio.run(run(bad, TOKEN)) == "ready"
    with pytest.raises(ClientError, match="authentication rejected"):
        asyncio.run(run(client_server.url, "nope"))
