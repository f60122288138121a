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


def _old_dataset(root: Path) -> None:
    seq = root / "train" / "seq_0000"
    seq.mkdir(parents=True)
    for name in ("mono.wav", "binaural.wav", "tx_positions.txt", "meta.json"):
        (seq / name).write_text("old")
    (root / "split.json").write_text("{}")


def test_existing_dataset_is_refused_unless_force(tmp_path: Path, capsys) -> None:
    root = tmp_path / "d"
    _old_dataset(root)
    argv = ["synth-binaural", "--out", str(root), "--sequences", "1", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out {root} already holds a dataset (split.json")
    assert "--force" in err and (root / "split.json").read_text() == "{}"


def test_force_deletes_only_the_earlier_dataset(tmp_path: Path) -> None:
    from livesense.cli.outputs import prepare_dataset_dir
    from livesense.errors import ConfigError

    root = tmp_path / "d"
    _old_dataset(root)
    (root / "notes.txt").write_text("mine")
    prepare_dataset_dir(root, "--out", force=True)
    assert sorted(p.name for p in root.rglob("*")) == ["notes.txt", "train"]
    _old_dataset(root / "x")
    (root / "x" / "train" / "seq_0000" / "labels.csv").write_text("not ours")
    with pytest.raises(ConfigError, match="holds files synth-binaural did not write"):
        prepare_dataset_dir(root / "x", "--out", force=True)
    assert (root / "x" / "train" / "seq_0000" / "mono.wav").exists()


def test_counts_are_checked_by_the_parser(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        main(["synth-binaural", "--out", str(tmp_path), "--sequences", "-3"])
    assert "argument --sequences: must be > 0, got -3" in capsys.readouterr().err
