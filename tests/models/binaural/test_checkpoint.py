"""Checkpoint round trip (safetensors + config.json) and clear errors for bad paths/files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from livesense.audio.geometry import Pose
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural.checkpoint import load_checkpoint, random_model, save_checkpoint
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.renderer import NeuralBinauralRenderer


def test_round_trip_gives_identical_output(tmp_path: Path) -> None:
    model = random_model("tiny", seed=11)
    d = save_checkpoint(tmp_path / "ckpt", model, extra={"steps": 12})
    assert (d / "model.safetensors").is_file()
    meta = json.loads((d / "config.json").read_text())
    assert meta["extra"] == {"steps": 12} and meta["config"]["name"] == "tiny"
    for path in (d, d / "model.safetensors"):
        loaded, cfg = load_checkpoint(path)
        assert cfg == model.config
        for k, v in model.state_dict().items():
            assert torch.equal(v, loaded.state_dict()[k]), k
    x = np.random.default_rng(0).standard_normal(4000).astype(np.float32) * 0.1
    speaker = Pose((0.5, 1.0, 0.0))
    ref = NeuralBinauralRenderer(model, speaker=speaker, nfe=3).process(x)
    got = NeuralBinauralRenderer.from_checkpoint(d, speaker=speaker, nfe=3).process(x)
    assert np.array_equal(ref, got)
    r = NeuralBinauralRenderer.random("tiny", seed=11, speaker=speaker, nfe=3)
    assert r.process(x).shape == ref.shape


def test_bad_paths_and_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ConfigError, match="not a BinauralFlow checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="weights not found"):
        load_checkpoint(empty)

    d = save_checkpoint(tmp_path / "c", random_model("tiny", seed=0))
    cfg_file = d / "config.json"
    good = cfg_file.read_text()
    cfg_file.unlink()
    with pytest.raises(ConfigError, match="config not found"):
        load_checkpoint(d)
    cfg_file.write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read checkpoint config"):
        load_checkpoint(d)
    meta = json.loads(good)
    meta["config"]["channels"] = 8  # the weights are for 4
    cfg_file.write_text(json.dumps(meta))
    with pytest.raises(LivesenseError, match="does not match its config"):
        load_checkpoint(d)
    meta["config"]["channels"] = -1
    cfg_file.write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="invalid config"):
        load_checkpoint(d)
    (d / "model.safetensors").write_bytes(b"garbage")
    cfg_file.write_text(good)
    with pytest.raises(LivesenseError, match="cannot read checkpoint weights"):
        load_checkpoint(d)
    with pytest.raises(ConfigError, match="differs"):
        save_checkpoint(tmp_path / "x", random_model("tiny"), BinauralFlowConfig.preset("small"))
