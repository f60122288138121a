"""`livesense webcam` on a synthetic lavfi camera with the tiny VLM."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

CAMERA = "lavfi:testsrc2=size=160x120:rate=10"


def webcam(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "livesense", "webcam", "--vlm", "tiny", *args],
        input=stdin, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def test_webcam_writes_notes_and_answers(tmp_path):
    rec = tmp_path / "rec"
    t0 = time.monotonic()
    r = webcam("--camera", CAMERA, "--duration", "5", "--segment-seconds", "2",
               "--record", str(rec), stdin="what is moving?\n")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 >= 4.5, "a synthetic source must be paced in real time"
    events = [json.loads(x) for x in (rec / "transcript.jsonl").read_text().splitlines()]
    notes = [e for e in events if e["type"] == "note"]
    answers = [e for e in events if e["type"] == "answer"]
    assert len(notes) >= 2 and notes[0]["t0"] == 0.0
    assert [a["question"] for a in answers] == ["what is moving?"]
    assert "notes" in r.stdout and "TINY RANDOM" in r.stderr
    stats = json.loads((rec / "reasoner_stats.json").read_text())
    assert stats["notes_emitted"] == len(notes) and stats["frames_ingested"] >= 4


def test_webcam_ctrl_c_keeps_transcript(tmp_path):
    rec = tmp_path / "rec"
    proc = subprocess.Popen(
        [sys.executable, "-m", "livesense", "webcam", "--vlm", "tiny", "--camera", CAMERA,
         "--segment-seconds", "1", "--record", str(rec)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p = rec / "transcript.jsonl"
        if p.exists() and p.read_text().count("\n") >= 2:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = (rec / "transcript.jsonl").read_text().splitlines()
    assert len(lines) >= 2 and all(json.loads(x)["type"] == "note" for x in lines)


@pytest.mark.parametrize(
    ("camera", "needle"),
    [("/nonexistent/video.mp4", "no such file"), ("lavfi:nosuchfilter=1", "nosuchfilter")],
)
def test_webcam_bad_camera(camera, needle):
    r = webcam("--camera", camera, "--duration", "1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and needle in r.stderr


def test_webcam_with_mic_runs_both_models(pulse):
    root, env = pulse
    rec = root / "rec"
    r = subprocess.run(
        [sys.executable, "-m", "livesense", "webcam", "--vlm", "tiny", "--camera", CAMERA,
         "--duration", "6", "--segment-seconds", "2", "--mic", "--input", "pulse",
         "--output", "pulse", "--record", str(rec), "-q"],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    from livesense.media.audio import read_audio

    audio = read_audio(str(rec / "binaural.wav"), sample_rate=48000, channels=2)
    # The devices open while the camera already runs (a second or two on a busy machine).
    assert audio.shape[0] == 2 and audio.shape[1] >= 2 * 48000
    stats = json.loads((rec / "stats.json").read_text())
    assert stats["rendered_samples"] == audio.shape[1]
    assert stats["output_underruns"] <= 10
    notes = [json.loads(x) for x in (rec / "transcript.jsonl").read_text().splitlines()]
    assert len(notes) >= 1


def test_webcam_option_errors(tmp_path):
    rec = tmp_path / "rec"
    rec.mkdir()
    (rec / "transcript.jsonl").write_text("{}\n")
    r = webcam("--camera", CAMERA, "--duration", "1", "--record", str(rec))
    assert r.returncode == 2 and "already holds the outputs of an earlier run" in r.stderr
    r = webcam("--camera", CAMERA, "--duration", "1", "--orbit", "4")
    assert (
        r.returncode == 2
        and r.stderr == "error: --orbit applies to --mic (the binaural audio): add --mic\n"
    )
