"""Evaluation of the binaural renderers on tiny hand-made sequences: consistency with a direct
render, the temperature, a flat folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from livesense.audio.dataset import BinauralDataset, read_wav_segment
from livesense.audio.metrics import METRIC_KEYS, evaluate_pair
from livesense.errors import ConfigError
from livesense.models.binaural.checkpoint import load_checkpoint
from livesense.models.binaural.evaluation import evaluate_dataset
from livesense.models.binaural.renderer import NeuralBinauralRenderer
from livesense.streaming.processor import to_numpy

SR = 48000


def test_temperature_zero_is_deterministic(eval_data: tuple[Path, Path]) -> None:
    data, ckpt = eval_data
    a = evaluate_dataset(data, ckpt, nfe=1, max_seconds=0.2, temperature=0.0)
    b = evaluate_dataset(data, ckpt, nfe=1, max_seconds=0.2)
    assert a.temperature == 0.0 and b.temperature == 1.0
    assert a.neural is not None and b.neural is not None and a.neural != b.neural
    with pytest.raises(ConfigError, match="--temperature"):
        evaluate_dataset(data, ckpt, temperature=-1.0)


def test_metrics_match_a_direct_render(eval_data: tuple[Path, Path]) -> None:
    data, ckpt = eval_data
    res = evaluate_dataset(data, ckpt, nfe=2)
    model, _ = load_checkpoint(ckpt)
    ds = BinauralDataset(data / "test", None)
    rows = []
    for i, info in enumerate(ds.sequences):
        mono = read_wav_segment(info.path / "mono.wav", 0, info.n_samples)
        target = read_wav_segment(info.path / "binaural.wav", 0, info.n_samples)
        tx, rx = ds.trajectories(i)
        r = NeuralBinauralRenderer(model, speaker=tx, listener=rx, nfe=2)
        with torch.inference_mode():
            pred = to_numpy(r.process(mono), np.float64)  # independent of the engine
        assert pred.shape == (2, info.n_samples)
        rows.append((evaluate_pair(pred, target, SR), info.n_samples))
        assert res.per_sequence[i]["neural"] == pytest.approx(rows[-1][0], rel=1e-4, abs=1e-6)
    assert ds.sequences[1].has_listener_poses
    weights = np.array([n for _, n in rows], float)
    for k in METRIC_KEYS:
        want = float(np.dot([m[k] for m, _ in rows], weights) / weights.sum())
        assert res.neural is not None and res.neural[k] == pytest.approx(want, rel=1e-4, abs=1e-6)


def test_flat_folder_is_used_when_there_is_no_test_split(tmp_path: Path, fake_sequence) -> None:
    fake_sequence(tmp_path / "flat" / "only", 5, seconds=0.2)
    res = evaluate_dataset(tmp_path / "flat")
    assert res.sequences == 1 and res.seconds == pytest.approx(0.2) and res.neural is None
