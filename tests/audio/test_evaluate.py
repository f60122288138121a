"""eval-binaural on tiny hand-made sequences: JSON, DSP-only mode, consistency, errors."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest

from livesense.audio.dataset import BinauralDataset, read_wav_segment
from livesense.audio.metrics import METRIC_KEYS, evaluate_pair
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural.checkpoint import load_checkpoint, save_checkpoint
from livesense.models.binaural.evaluation import (
    add_eval_parser,
    cmd_eval,
    evaluate_dataset,
    render_neural,
)
from livesense.models.binaural.renderer import random_model

SR = 48000


def make_dataset(root: Path, make_sequence) -> Path:
    """root/test with 2 sequences x 0.5 s (the second with a moving listener)."""
    for k in range(2):
        make_sequence(root / "test" / f"seq_{k}", 40 + k, rx=k == 1)
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, fake_sequence) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("eval")
    data = make_dataset(
        root / "data", fake_sequence
    )  # test/: 2 sequences x 0.5 s, one with a moving listener
    ckpt = save_checkpoint(root / "ckpt", random_model("tiny", 3))
    return data, ckpt


def _args(**kw: object) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers(dest="command"))
    argv = ["eval-binaural"]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}"] + ([] if v is True else [str(v)])
    return parser.parse_args(argv)


def test_json_has_both_renderers_and_all_metrics(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, ckpt = setup
    out = tmp_path / "r.json"
    assert cmd_eval(_args(data=data, checkpoint=ckpt, nfe=1, json=out)) == 0
    doc = json.loads(out.read_text())
    assert doc["sequences"] == 2 and doc["seconds"] == pytest.approx(1.0)
    for key in ("neural", "dsp"):
        assert set(doc[key]) == set(METRIC_KEYS)
        assert all(math.isfinite(v) for v in doc[key].values())
    assert doc["neural"] != doc["dsp"]
    printed = capsys.readouterr().out
    assert "mrstft" in printed and "neural" in printed


def test_dsp_only_and_max_seconds(
    setup: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data, _ = setup
    out = tmp_path / "r.json"
    assert cmd_eval(_args(data=data, json=out, max_seconds=0.25, dsp_only=True)) == 0
    doc = json.loads(out.read_text())
    assert doc["neural"] is None and set(doc["dsp"]) == set(METRIC_KEYS)
    assert doc["sequences"] == 2 and doc["seconds"] == pytest.approx(0.5)
    assert "neural (no checkpoint)" in capsys.readouterr().out


def test_default_is_the_bundled_model_with_a_picture(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    data, _ = setup
    out, png = tmp_path / "r.json", tmp_path / "fig" / "spec.png"
    args = _args(data=data, json=out, max_seconds=0.25, plot=png, plot_sequence="seq_1")
    assert cmd_eval(args) == 0
    doc = json.loads(out.read_text())
    assert doc["checkpoint"].endswith("binauralflow_small") and doc["nfe"] == 2
    assert set(doc["neural"]) == set(METRIC_KEYS) and doc["temperature"] == 0.25
    data_png = png.read_bytes()
    assert data_png[:8] == b"\x89PNG\r\n\x1a\n" and len(data_png) > 20_000
    with pytest.raises(ConfigError, match="--plot-sequence 'nope'"):
        cmd_eval(_args(data=data, plot=png, plot_sequence="nope", dsp_only=True))


def test_temperature_zero_is_deterministic(setup: tuple[Path, Path]) -> None:
    data, ckpt = setup
    a = evaluate_dataset(data, ckpt, nfe=1, max_seconds=0.2, temperature=0.0)
    b = evaluate_dataset(data, ckpt, nfe=1, max_seconds=0.2)
    assert a.temperature == 0.0 and b.temperature == 1.0
    assert a.neural is not None and b.neural is not None and a.neural != b.neural
    with pytest.raises(ConfigError, match="--temperature"):
        evaluate_dataset(data, ckpt, temperature=-1.0)


def test_metrics_match_a_direct_render(setup: tuple[Path, Path]) -> None:
    data, ckpt = setup
    res = evaluate_dataset(data, ckpt, nfe=2)
    model, _ = load_checkpoint(ckpt)
    ds = BinauralDataset(data / "test", None)
    rows = []
    for i, info in enumerate(ds.sequences):
        mono = read_wav_segment(info.path / "mono.wav", 0, info.n_samples)
        target = read_wav_segment(info.path / "binaural.wav", 0, info.n_samples)
        tx, rx = ds.trajectories(i)
        pred = render_neural(model, mono, tx, rx, nfe=2)
        assert pred.shape == (2, info.n_samples)
        rows.append((evaluate_pair(pred, target, SR), info.n_samples))
        assert res.per_sequence[i]["neural"] == pytest.approx(rows[-1][0], rel=1e-6)
    assert ds.sequences[1].has_listener_poses
    weights = np.array([n for _, n in rows], float)
    for k in METRIC_KEYS:
        want = float(np.dot([m[k] for m, _ in rows], weights) / weights.sum())
        assert res.neural is not None and res.neural[k] == pytest.approx(want, rel=1e-6)


def test_flat_folder_is_used_when_there_is_no_test_split(tmp_path: Path, fake_sequence) -> None:
    fake_sequence(tmp_path / "flat" / "only", 5, seconds=0.2)
    res = evaluate_dataset(tmp_path / "flat")
    assert res.sequences == 1 and res.seconds == pytest.approx(0.2) and res.neural is None


def test_bad_inputs_give_clear_errors(setup: tuple[Path, Path], tmp_path: Path) -> None:
    data, _ = setup
    with pytest.raises(LivesenseError, match="folder not found"):
        cmd_eval(_args(data=tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(LivesenseError, match="holds no sequences"):
        cmd_eval(_args(data=tmp_path / "empty"))
    with pytest.raises(LivesenseError, match="--checkpoint .*not found"):
        cmd_eval(_args(data=data, checkpoint=tmp_path / "missing"))
    with pytest.raises(LivesenseError, match="--nfe must be positive"):
        cmd_eval(_args(data=data, nfe=0))
    with pytest.raises(ConfigError, match="exclude each other"):
        cmd_eval(_args(data=data, checkpoint=tmp_path / "x", dsp_only=True))
