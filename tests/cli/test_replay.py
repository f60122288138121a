"""``livesense replay`` end to end on small inputs in tmp_path: renderers, poses, pacing, the
video reasoner, one-line errors, Ctrl-C and SIGTERM keeping partial outputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import av
import numpy as np
import pytest

import livesense.models.binaural.checkpoint as ck
from livesense.cli import main
from livesense.media.audio import read_audio
from livesense.models.binaural import random_model, save_checkpoint


def test_replay_passthrough_reconstructs_audio(tmp_path, sample_clip):
    out = tmp_path / "out"
    args = [
        "replay",
        str(sample_clip),
        "--out",
        str(out),
        "--fast",
        "--quiet",
        "--renderer",
        "passthrough",
    ]
    assert main(args) == 0
    stats = json.loads((out / "stats.json").read_text())
    ref = read_audio(str(sample_clip), sample_rate=48000)
    got = read_audio(str(out / "audio.wav"), sample_rate=48000)
    # Nothing lost or invented: exactly as many samples out as in, and the same samples
    # (STFT -> ISTFT identity; the WAV is 16-bit).
    assert stats["samples_in"] == stats["samples_out"] == ref.shape[1] == got.shape[1]
    assert np.max(np.abs(got - ref)) < 2e-4
    assert stats["chunks"] == -(-ref.shape[1] // 480)
    assert stats["latency_ms"] == pytest.approx(511 / 48)  # n_fft - 1 samples worst case
    assert stats["video_frames"] == 150 and not stats["interrupted"]
    with av.open(str(out / "output.mp4")) as c:
        kinds = sorted(s.type for s in c.streams)
        assert kinds == ["audio", "video"]
        assert c.streams.audio[0].channels == 2
        assert c.duration / 1e6 == pytest.approx(ref.shape[1] / 48000, abs=0.2)


def test_replay_dsp_orbit_with_plot(tmp_path, sample_clip):
    out = tmp_path / "out"
    args = [
        "replay",
        str(sample_clip),
        "--out",
        str(out),
        "--fast",
        "--quiet",
        "--orbit",
        "4",
        "--plot",
    ]
    assert main([*args, "--renderer", "dsp"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    ref = read_audio(str(sample_clip), sample_rate=48000)
    got = read_audio(str(out / "binaural.wav"), sample_rate=48000, channels=2)
    assert got.shape == (2, ref.shape[1]) and stats["samples_out"] == ref.shape[1]
    assert stats["latency_ms"] == 0.0
    # The orbit starts in front and passes the right ear at 1 s and the left ear at 3 s.
    seg = lambda t: got[:, int((t - 0.25) * 48000) : int((t + 0.25) * 48000)]  # noqa: E731
    db = lambda x: 10 * np.log10(np.mean(x**2) + 1e-12)  # noqa: E731
    right, left = seg(1.0), seg(3.0)
    assert db(right[1]) - db(right[0]) > 3, "speaker at the right should be louder on the right"
    assert db(left[0]) - db(left[1]) > 3, "speaker at the left should be louder on the left"
    png = (out / "binaural.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with av.open(str(out / "output.mp4")) as c:
        assert c.streams.audio[0].channels == 2 and c.streams.video[0].frames in (0, 150)


def test_replay_static_right_speaker(tmp_path, sample_clip):
    """The default renderer: the bundled neural model of the demo room."""
    out = tmp_path / "o"
    args = ["replay", str(sample_clip), "--out", str(out), "--fast", "--quiet", "--no-video"]
    assert main([*args, "--speaker-pose", "0,1.5,0"]) == 0
    got = read_audio(str(out / "binaural.wav"), sample_rate=48000, channels=2)
    assert np.mean(got[1] ** 2) > 2 * np.mean(got[0] ** 2)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["chunk_samples"] == 2048 and stats["latency_ms"] > 5  # neural timing
    with av.open(str(out / "output.mp4")) as c:
        assert [s.type for s in c.streams] == ["audio"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--speaker-pose", "1,nan,0"], "speaker"),
        (["--speaker-pose", "1,0,0,0,0,0,0"], "quaternion"),
        (["--speaker-pose", "1,2"], "x,y,z"),
        (["--poses", "/nonexistent/tx_positions.txt"], "tx_positions.txt"),
        (["--renderer", "dsp", "--hrtf", "/nonexistent/h.sofa"], "h.sofa"),
        (["--hrtf", "/nonexistent/h.sofa"], "--renderer dsp"),
        (["--speaker-pose", "0,0,0", "--orbit", "3"], "orbit"),
    ],
)
def test_bad_pose_input_gets_clear_error(tmp_path, extra, needle, livesense_process, sample_clip):
    r = livesense_process(
        "replay", str(sample_clip), "--out", str(tmp_path / "o"), "--fast", *extra
    )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.startswith("error:") and needle in r.stderr.lower(), r.stderr


def test_malformed_pose_file(tmp_path, livesense_process, sample_clip):
    poses = tmp_path / "tx_positions.txt"
    poses.write_text("1 0 0 0 0 0 1\n1 0 zero 0 0 0 1\n")
    r = livesense_process(
        "replay", str(sample_clip), "--out", str(tmp_path / "o"), "--fast", "--poses", str(poses)
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "tx_positions.txt" in r.stderr and "2" in r.stderr


def test_replay_is_paced_in_real_time(tmp_path, make_clip):
    clip = make_clip(tmp_path / "clip.mp4", seconds=1.0)
    t0 = time.monotonic()
    assert main(["replay", str(clip), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    wall = time.monotonic() - t0
    assert wall >= 0.9, f"paced replay of 1 s took only {wall:.2f} s"
    t0 = time.monotonic()
    assert main(["replay", str(clip), "--out", str(tmp_path / "f"), "--quiet", "--fast"]) == 0
    assert time.monotonic() - t0 < wall


@pytest.mark.parametrize(
    ("make", "needle"),
    [
        (lambda d: d / "missing.mp4", "missing.mp4"),
        (lambda d: d, "directory"),
        (lambda d: (d / "notes.txt").write_text("hello") and d / "notes.txt", "notes.txt"),
    ],
)
def test_bad_input_gets_one_line_error(tmp_path, make, needle, livesense_process):
    path = make(tmp_path)
    r = livesense_process("replay", str(path), "--out", str(tmp_path / "o"), "--fast")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    assert needle in lines[0].lower()


def test_no_audio_stream_is_a_clear_error(tmp_path, make_clip, livesense_process):
    clip = make_clip(tmp_path / "silent.mp4", seconds=0.5, audio=False)
    r = livesense_process("replay", str(clip), "--out", str(tmp_path / "o"), "--fast")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "audio" in r.stderr and r.stderr.startswith("error:")


def test_bad_option_values(tmp_path, livesense_process, sample_clip):
    r = livesense_process("replay", str(sample_clip), "--chunk-ms", "0")
    assert r.returncode == 2 and "must be > 0" in r.stderr
    f = tmp_path / "file"
    f.write_text("x")
    r = livesense_process("replay", str(sample_clip), "--out", str(f), "--fast")
    assert r.returncode == 2 and "not a folder" in r.stderr


@pytest.mark.skipif(os.name != "posix", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_and_sigterm_keep_partial_outputs(tmp_path, sample_clip, sig):
    out = tmp_path / "o"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "livesense",
            "replay",
            str(sample_clip),
            "--out",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "binaural.wav").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interrupted"] is True
    got = read_audio(str(out / "binaural.wav"), sample_rate=48000, channels=2)
    assert 0.5 * 48000 < got.shape[1] < 9 * 48000
    assert got.shape[1] == stats["samples_out"]
    with av.open(str(out / "output.mp4")) as c:
        frames = sum(1 for _ in c.decode(audio=0))
        assert frames > 10


def test_replay_with_tiny_vlm_writes_transcript_and_accuracy(tmp_path, sample_clip):
    questions = tmp_path / "q.json"
    questions.write_text(
        json.dumps(
            {
                "video_path": "sample.mp4",
                "questions": [
                    {
                        "question": "What colour is the ball?",
                        "time_stamp": "00:00:03",
                        "options": ["red", "blue", "green", "yellow"],
                        "answer": "A",
                    },
                    {"question": "What is happening?", "time_stamp": "00:00:07"},
                ],
            }
        )
    )
    out = tmp_path / "out"
    args = ["replay", str(sample_clip), "--out", str(out), "--fast", "--quiet", "--vlm", "tiny"]
    args += ["--renderer", "dsp"]
    assert main([*args, "--questions", str(questions), "--segment-seconds", "3"]) == 0
    events = [json.loads(line) for line in (out / "transcript.jsonl").read_text().splitlines()]
    notes = [e for e in events if e["type"] == "note"]
    answers = [e for e in events if e["type"] == "answer"]
    assert len(notes) >= 3  # one per 3 s segment of the 10 s clip
    assert [a["question"] for a in answers] == ["What colour is the ball?", "What is happening?"]
    assert answers[0]["text"] in "ABCD" and answers[0]["t1"] >= 3.0
    assert answers[1]["t1"] >= 7.0
    assert [e["t1"] for e in events] == sorted(e["t1"] for e in events)  # time order
    acc = json.loads((out / "accuracy.json").read_text())
    assert acc["questions"] == 1 and acc["answered"] == 1
    stats = json.loads((out / "stats.json").read_text())
    assert stats["reasoner"]["answers"] == 2 and stats["reasoner"]["notes_emitted"] == len(notes)
    assert (stats["reasoner"]["device"], stats["reasoner"]["dtype"]) == ("cpu", "float32")
    assert stats["engine"] == {}  # the DSP renderer has no engine


def test_reasoner_option_errors(tmp_path, livesense_process, sample_clip):
    bad = tmp_path / "q.json"
    bad.write_text('{"questions": [{"question": "x"}]}')
    r = livesense_process("replay", str(sample_clip), "--out", str(tmp_path / "o"), "--fast", "--vlm", "tiny",
                "--questions", str(bad))  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr and "q.json" in r.stderr
    r = livesense_process(
        "replay", str(sample_clip), "--out", str(tmp_path / "o"), "--questions", str(bad)
    )
    assert r.returncode == 2 and "--vlm" in r.stderr
    r = livesense_process(
        "replay", str(sample_clip), "--out", str(tmp_path / "o"), "--vlm", "/nonexistent/m"
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr and "cannot load" in r.stderr


def test_replay_neural_random_weights_and_checkpoint(tmp_path, make_clip):
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0)
    out = tmp_path / "o"
    args = ["replay", str(clip), "--out", str(out), "--fast", "--quiet", "--renderer", "neural"]
    assert main(args) == 0  # no checkpoint: the bundled model
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples_out"] == 48000 and stats["latency_ms"] > 5  # the neural timing
    assert main([*args, "--random-weights", "--nfe", "1", "--force"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples_out"] == stats["samples_in"] == 48000
    assert stats["chunk_samples"] == 2048  # neural replays in 16-frame blocks by default
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, random_model("small"))
    out2 = tmp_path / "o2"
    assert main([*args[:3], str(out2), *args[4:], "--checkpoint", str(ckpt), "--nfe", "1"]) == 0
    a = read_audio(str(out / "binaural.wav"), 48000, 2)
    b = read_audio(str(out2 / "binaural.wav"), 48000, 2)
    assert np.abs(a - b).max() < 1e-4  # the checkpoint renders what the model rendered
    assert main([*args, "--force", "--checkpoint", str(tmp_path / "missing")]) == 2


def test_missing_bundled_checkpoint_is_a_clear_error(tmp_path, make_clip, monkeypatch, capsys):
    monkeypatch.setattr(ck, "BUNDLED_CHECKPOINT", tmp_path / "gone")
    clip = make_clip(tmp_path / "c.mp4", seconds=0.2)
    assert main(["replay", str(clip), "--out", str(tmp_path / "o"), "--fast", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bundled BinauralFlow checkpoint is missing" in err and "--renderer dsp" in err
    assert "Traceback" not in err


def _one_error_line(r) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--chunk-ms", "1e9"], "argument --chunk-ms: must be > 0 and at most 1000 ms"),
        (["--sample-rate", "1000000000"], "argument --sample-rate: must be between 8000 and"),
        (["--sample-rate", "100"], "argument --sample-rate"),
        (["--orbit", "inf"], "argument --orbit: must be a finite number"),
        (["--speaker-pose", "1e308,0,0"], "--speaker-pose 1e308,0,0: coordinates are metres"),
        (["--renderer", "dsp", "--nfe", "2"], "--nfe applies to --renderer neural"),
        (["--renderer", "dsp", "--checkpoint", "c"], "--checkpoint applies to --renderer neural"),
        (["--renderer", "dsp", "--random-weights"], "--random-weights applies to --renderer neural"),
        (["--renderer", "passthrough", "--orbit", "3"], "--orbit applies to --renderer dsp or"),
    ],
)  # fmt: skip
def test_out_of_range_and_unused_options_are_errors(
    tmp_path, extra, needle, livesense_process, sample_clip
):
    """No multi-GiB allocation, no numpy overflow warning, no silently ignored option."""
    r = livesense_process("replay", sample_clip, "--out", tmp_path / "o", "--fast", *extra)
    assert needle in _one_error_line(r)


def test_unwritable_out_is_an_error(tmp_path, livesense_process, sample_clip):
    (tmp_path / "file").write_text("x")
    for out, needle in [
        (tmp_path / "file" / "sub", "a part of the path is a file"),
        ("/proc/livesense-out", "cannot write there"),
    ]:
        r = livesense_process("replay", sample_clip, "--out", out, "--fast", "--renderer", "dsp")
        line = _one_error_line(r)
        assert line.startswith(f"error: --out {out}") and needle in line


def test_used_out_is_refused_unless_force(tmp_path, make_clip, capsys):
    clip = make_clip(tmp_path / "c.wav", seconds=0.3, video=False)
    out = tmp_path / "o"
    args = ["replay", str(clip), "--out", str(out), "--fast", "--quiet", "--renderer", "dsp"]
    assert main([*args, "--plot"]) == 0 and (out / "binaural.png").exists()
    (out / "mine.txt").write_text("keep me")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {out} already holds the outputs of an earlier run (")
    assert "binaural.wav" in err and "--force" in err
    assert main([*args, "--force"]) == 0
    # The earlier run's files are gone (no stale plot), the user's own file is kept.
    assert not (out / "binaural.png").exists() and (out / "mine.txt").read_text() == "keep me"
    assert json.loads((out / "stats.json").read_text())["samples_out"] == round(0.3 * 48000)


def test_zero_sample_wav_is_an_error_and_leaves_nothing(tmp_path, livesense_process):
    wav = tmp_path / "empty.wav"
    from livesense.media.wav import WavWriter

    WavWriter(wav, 48000).close()  # a header and no samples
    out = tmp_path / "o"
    r = livesense_process("replay", wav, "--out", out, "--fast", "--renderer", "dsp")
    assert "holds no samples" in _one_error_line(r)
    assert list(out.iterdir()) == []  # no stats.json or output.mp4 pretending to be a run
    r = livesense_process("replay", wav, "--out", out, "--fast", "--renderer", "dsp")
    assert "holds no samples" in _one_error_line(r)  # not "already holds the outputs"


def _live_webm(path, seconds: float = 1.0):
    """A WebM as a browser's MediaRecorder writes it: no duration, no cues."""
    from fractions import Fraction

    with av.open(str(path), "w", format="webm", options={"live": "1"}) as c:
        a = c.add_stream("libopus", rate=48000, layout="mono")
        x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * 48000)) / 48000))[None]
        f = av.AudioFrame.from_ndarray(x.astype(np.float32), format="fltp", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, 0, Fraction(1, 48000)
        for p in [*a.encode(f), *a.encode(None)]:
            c.mux(p)
    with av.open(str(path)) as c:
        assert c.duration is None  # what the replay must cope with
    return path


def test_unknown_duration_replays_with_a_counting_bar(tmp_path, monkeypatch, capsys):
    import functools

    import livesense.cli.replay as replay_cli
    from livesense.cli.progress import ProgressBar

    monkeypatch.setattr(replay_cli, "ProgressBar", functools.partial(ProgressBar, force=True))
    clip = _live_webm(tmp_path / "live.webm")
    out = tmp_path / "o"
    assert main(["replay", str(clip), "--out", str(out), "--renderer", "dsp", "--fast"]) == 0
    assert json.loads((out / "stats.json").read_text())["samples_in"] == 48000
    assert "replay" in capsys.readouterr().err  # the bar was drawn


def test_truncated_file_is_one_warning_line(tmp_path, make_clip, livesense_process):
    clip = make_clip(tmp_path / "c.mp4", seconds=2.0, faststart=True)
    data = clip.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    out = tmp_path / "o"
    r = livesense_process("replay", cut, "--out", out, "--fast", "--renderer", "dsp", "-q")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {cut}: truncated or damaged"), lines
    assert "of the 2.00 s it declares" in lines[0]


def test_replay_falling_behind_warns_once(tmp_path, make_clip, monkeypatch, capsys):
    """A renderer at twice real time: one warning with the RTF and what to do, and the lag
    in stats.json."""
    from livesense.audio.dsp_renderer import DspBinauralRenderer

    step = DspBinauralRenderer.step

    def slow_step(self, x):
        time.sleep(2.0 * x.shape[-1] / 48000)
        return step(self, x)

    monkeypatch.setattr(DspBinauralRenderer, "step", slow_step)
    clip = make_clip(tmp_path / "c.wav", seconds=1.5, video=False)
    out = tmp_path / "o"
    assert main(["replay", str(clip), "--out", str(out), "--renderer", "dsp", "--quiet"]) == 0
    warnings = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1, warnings
    assert "cannot keep up in real time (RTF " in warnings[0] and "try --fast" in warnings[0]
    rtf = float(warnings[0].split("RTF ")[1].split(",")[0])
    assert 1.3 < rtf < 4
    stats = json.loads((out / "stats.json").read_text())
    assert stats["max_lag_ms"] > 500 and stats["rtf"] > 1.5


def test_replay_in_time_does_not_warn(tmp_path, make_clip, capsys):
    clip = make_clip(tmp_path / "c.wav", seconds=0.5, video=False)
    assert main(["replay", str(clip), "--out", str(tmp_path / "o"), "--renderer", "dsp", "-q"]) == 0
    assert "warning" not in capsys.readouterr().err
