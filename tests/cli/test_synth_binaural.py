"""``livesense synth-binaural``: defaults from SynthConfig, a run, one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from livesense.audio.synth import SynthConfig
from livesense.cli import main


def test_defaults_come_from_the_config(cli_args) -> None:
    args = cli_args("synth-binaural", out="x")
    d = SynthConfig(Path("x"))
    assert (args.sequences, args.seconds, args.room, args.split, args.seed) == (
        d.sequences, d.seconds, d.room, d.split, d.seed,
    )  # fmt: skip


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_run_writes_sequences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["synth-binaural", "--out", str(tmp_path / "d"), "--sequences", "1", "--seconds", "0.5"]
    assert main([*argv, "--no-progress"]) == 0
    assert "wrote 1 sequences" in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "split.json").read_text())["seconds"] == 0.5


def test_bad_voices_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["synth-binaural", "--out", str(tmp_path / "o"), "--voices", str(empty)]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no .wav files" in err and "\n" not in err
