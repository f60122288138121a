"""``livesense train-binaural``: a run, no overwriting, one-line errors, SIGTERM from outside."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from livesense.errors import LivesenseError


def test_bad_inputs_give_clear_errors(tmp_path: Path, fake_sequence, run_command) -> None:
    with pytest.raises(LivesenseError, match="folder not found"):
        run_command(
            "train-binaural", data=tmp_path / "nope", out=tmp_path / "c", steps=1, preset="tiny"
        )
    (tmp_path / "empty").mkdir()
    with pytest.raises(LivesenseError, match="holds no sequences"):
        run_command(
            "train-binaural", data=tmp_path / "empty", out=tmp_path / "c", steps=1, preset="tiny"
        )
    fake_sequence(tmp_path / "d" / "a", 2, speaker_yaw=180.0)
    with pytest.raises(LivesenseError, match="--resume: no checkpoint"):
        run_command("train-binaural", data=tmp_path / "d", out=tmp_path / "c", steps=1, resume=True)
    with pytest.raises(LivesenseError, match="--steps must be positive"):
        run_command("train-binaural", data=tmp_path / "d", out=tmp_path / "c", steps=0)


def test_cli_trains_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture, fake_sequence, run_command
) -> None:
    fake_sequence(tmp_path / "d" / "train" / "a", 3, speaker_yaw=180.0)
    args = dict(data=tmp_path / "d", out=tmp_path / "c", steps=2, preset="tiny", batch=1,
                segment_seconds=0.03, threads=1)  # fmt: skip
    assert run_command("train-binaural", **args) == 0
    assert "checkpoint in" in capsys.readouterr().out
    with pytest.raises(LivesenseError, match="already holds a checkpoint"):
        run_command("train-binaural", **args)


def test_sigterm_from_outside_saves_and_exits_130(tmp_path: Path, fake_sequence) -> None:
    """A real process: SIGTERM stops after the current step, saves, exits 130."""
    fake_sequence(tmp_path / "d" / "train" / "a", 3, speaker_yaw=180.0)
    cmd = [sys.executable, "-m", "livesense", "train-binaural", "--data", str(tmp_path / "d"),
           "--out", str(tmp_path / "c"), "--steps", "100000", "--preset", "tiny", "--batch", "1",
           "--segment-seconds", "0.03", "--threads", "1", "--val-every", "1", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 120
    for line in proc.stderr:  # validation lines: "step N: ..."
        if line.startswith("step 3:") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "Traceback" not in err
    step = json.loads((tmp_path / "c" / "config.json").read_text())["extra"]["step"]
    assert 3 <= step < 100000


def test_corrupt_optimizer_state_gives_no_pickle_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture, fake_sequence
) -> None:
    from livesense.cli import main

    fake_sequence(tmp_path / "d" / "train" / "a", 3, speaker_yaw=180.0)
    argv = ["train-binaural", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "c"),
            "--steps", "2", "--preset", "tiny", "--batch", "1", "--segment-seconds", "0.03",
            "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    (tmp_path / "c" / "optimizer.pt").write_bytes(b"\x80\x04garbage")
    capsys.readouterr()
    assert main([*argv, "--steps", "3", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"error: --resume: {tmp_path / 'c' / 'optimizer.pt'} is not an optimizer state saved "
        "by train-binaural (corrupt, or written by another program)\n"
    )
