"""``--device`` / ``--dtype`` on every command that renders or reasons (issue 13): listed in
the help, one-line errors for a device that is not there or not known, a bfloat16 neural
replay on the CPU, eval-binaural on the CPU."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from livesense.audio.metrics import METRIC_KEYS
from livesense.cli import build_parser, main
from livesense.errors import ConfigError
from livesense.media.audio import read_audio

# No CUDA device for the subprocesses, whatever this machine has.
NO_CUDA = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def _one_error_line(r) -> str:
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
    return lines[0]


@pytest.mark.parametrize("command", ["serve", "replay", "mic", "webcam", "eval-binaural"])
def test_help_lists_device_and_dtype(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        build_parser(command).parse_args([command, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "--device auto|cpu|cuda[:N]" in out
    assert "--dtype {float32,bfloat16,float16}" in out


def test_replay_on_a_missing_cuda_device_is_one_error_line(
    tmp_path: Path, sample_clip: Path, livesense_process
) -> None:
    out = tmp_path / "o"
    r = livesense_process(
        "replay", sample_clip, "--out", out, "--fast", "--renderer", "neural", "--device",
        "cuda", env=NO_CUDA,
    )  # fmt: skip
    line = _one_error_line(r)
    assert line.startswith("error: --device cuda: no CUDA device") and "--device cpu" in line
    assert not (out / "binaural.wav").exists()
    r = livesense_process(
        "replay", sample_clip, "--out", out, "--fast", "--renderer", "neural", "--device",
        "cuda:1", env=NO_CUDA,
    )  # fmt: skip
    assert _one_error_line(r).startswith("error: --device cuda:1: no CUDA device")


@pytest.mark.parametrize("command", ["replay", "serve"])
def test_unknown_device_is_one_error_line(
    command: str, tmp_path: Path, sample_clip: Path, livesense_process
) -> None:
    args = (
        ["replay", sample_clip, "--out", tmp_path / "o", "--fast", "--renderer", "neural"]
        if command == "replay"
        else ["serve", "--port", "0", "--renderer", "neural"]
    )
    r = livesense_process(*args, "--device", "tpu", env=NO_CUDA, timeout=60)
    line = _one_error_line(r)
    assert "--device 'tpu'" in line and "auto, cpu, cuda or cuda:N" in line


def test_unknown_dtype_is_an_argparse_error(tmp_path: Path, livesense_process) -> None:
    r = livesense_process("replay", "x.mp4", "--out", tmp_path / "o", "--dtype", "int8")
    line = _one_error_line(r)
    assert "--dtype" in line and "int8" in line


@pytest.mark.parametrize(
    ("command", "flags", "named"),
    [
        ("replay", ["--device", "cpu"], "--device applies to --renderer neural or --vlm"),
        ("replay", ["--dtype", "bfloat16"], "--dtype applies to --renderer neural or --vlm"),
        ("mic", ["--dtype", "float16"], "--dtype applies to --renderer neural: the dsp"),
    ],
)
def test_device_options_without_a_model_are_rejected(
    command: str, flags: list[str], named: str, tmp_path: Path, sample_clip: Path, capsys
) -> None:
    """The DSP renderer has no device or precision: saying one is a mistake, not ignored."""
    args = [sample_clip, "--out", tmp_path / "o", "--fast"] if command == "replay" else []
    assert main([command, *map(str, args), "--renderer", "dsp", *flags]) == 2
    err = capsys.readouterr().err
    assert named in err and "runs on the CPU in float32" in err
    assert not (tmp_path / "o").exists()  # rejected before any output


def test_replay_neural_bfloat16_on_the_cpu(tmp_path: Path, make_clip) -> None:
    clip = make_clip(tmp_path / "c.mp4", seconds=0.5)
    n = read_audio(str(clip), sample_rate=48000).shape[1]
    base = ["replay", str(clip), "--fast", "--quiet", "--renderer", "neural", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "bf16"), "--dtype", "bfloat16"]) == 0
    assert main([*base, "--out", str(tmp_path / "f32")]) == 0
    stats = json.loads((tmp_path / "bf16" / "stats.json").read_text())
    assert stats["samples_in"] == stats["samples_out"] == n
    engine = stats["engine"]  # where and how it rendered
    assert (engine["device"], engine["dtype"], engine["mode"]) == ("cpu", "bfloat16", "eager")
    assert engine["capacity"] == 1 and engine["max_batch"] == 1 and engine["ticks"] > 0
    bf16 = read_audio(str(tmp_path / "bf16" / "binaural.wav"), 48000, 2)
    f32 = read_audio(str(tmp_path / "f32" / "binaural.wav"), 48000, 2)
    assert bf16.shape == f32.shape == (2, n)  # as many samples as the input audio
    assert np.isfinite(bf16).all() and np.abs(bf16).max() > 1e-3
    # The precision reached the model: a different render, but the same sound.
    err = np.sqrt(np.mean((bf16 - f32) ** 2)) / np.sqrt(np.mean(f32**2))
    assert np.abs(bf16 - f32).max() > 1e-4 and err < 0.1, err


def test_eval_binaural_on_the_cpu(
    eval_data: tuple[Path, Path], run_command, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, ckpt = eval_data
    docs = {}
    for name, extra in {
        "cpu": {},
        "auto": {"device": "auto"},
        "bf16": {"dtype": "bfloat16"},
    }.items():
        out = tmp_path / f"{name}.json"
        kw = {"device": "cpu", **extra}
        assert run_command("eval-binaural", data=data, checkpoint=ckpt, nfe=1, json=out, **kw) == 0
        docs[name] = json.loads(out.read_text())
    for doc in docs.values():
        assert doc["sequences"] == 2 and set(doc["neural"]) == set(METRIC_KEYS)
        assert all(math.isfinite(v) for v in doc["neural"].values())
    if not torch.cuda.is_available():
        assert docs["auto"]["neural"] == docs["cpu"]["neural"]  # auto is the CPU here
    assert docs["bf16"]["neural"] != docs["cpu"]["neural"]  # the dtype reached the model
    assert docs["bf16"]["dsp"] == docs["cpu"]["dsp"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cuda: no CUDA device"):
        run_command("eval-binaural", data=data, checkpoint=ckpt, device="cuda")
