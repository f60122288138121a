"""The shipped BinauralFlow checkpoint: what it is, and that it still beats the DSP renderer."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from livesense.cli import main
from livesense.models.binaural import bundled_checkpoint, load_checkpoint
from livesense.models.binaural.evaluation import evaluate_dataset


def test_bundled_checkpoint_is_the_small_dsp_prior_model() -> None:
    path = bundled_checkpoint()
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 20 * 2**20
    model, cfg = load_checkpoint(path)
    assert (cfg.name, cfg.prior, cfg.nfe, cfg.temperature) == ("small", "dsp", 2, 0.25)
    assert model.num_parameters() == 129_988


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng (make test)")
def test_bundled_model_beats_dsp_on_an_unseen_sequence(tmp_path: Path) -> None:
    """A fresh test-split sequence (unseen voices): the room shows in MRSTFT by a wide margin
    (46% on the full test split); amplitude and ILD margins are too small for 2 s of audio."""
    data = tmp_path / "data"
    args = ["synth-binaural", "--out", str(data), "--sequences", "1", "--seconds", "2"]
    assert main([*args, "--split", "test", "--seed", "11", "--no-progress"]) == 0
    res = evaluate_dataset(data)
    assert res.neural is None  # no checkpoint passed to the library call: DSP only
    res = evaluate_dataset(data, bundled_checkpoint())
    assert res.neural is not None and res.sequences == 1
    assert res.neural["mrstft"] < 0.8 * res.dsp["mrstft"], (res.neural, res.dsp)
