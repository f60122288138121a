"""``livesense client`` end to end on loopback: exact binaural output, transcript, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.cli import main
from livesense.live.server.app import ServerThread
from livesense.live.server.protocol import decode_audio, encode_audio
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
