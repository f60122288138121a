"""BinauralFlow config presets/validation and the ODE solvers with early skip."""

from __future__ import annotations

import pytest

from livesense.errors import ConfigError
from livesense.models.binaural.config import BinauralFlowConfig


def test_presets_and_timing() -> None:
    paper = BinauralFlowConfig.preset("paper")
    assert (paper.sample_rate, paper.n_fft, paper.hop, paper.n_bins) == (48000, 512, 128, 257)
    assert paper.n_down == 4 and paper.freq_sizes == (257, 129, 65, 33, 17)
    assert (paper.solver, paper.nfe, paper.t0, paper.schedule_steps) == ("midpoint", 6, 0.5, 12)
    assert paper.latency == 384 and paper.granularity == 128
    assert paper.latency_ms == pytest.approx(8.0)
    small = BinauralFlowConfig.preset("small")
    assert small.latency == small.n_fft - small.hop and small.granularity == small.hop
    assert small.max_delay_ms < 43
    assert BinauralFlowConfig.from_dict(small.to_dict()) == small


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"hop": 200}, "COLA"),
        ({"channels": 0}, "channels"),
        ({"norm_groups": 5}, "norm_groups"),
        ({"solver": "rk4"}, "solver"),
        ({"t0": 1.0}, "t0"),
        ({"channel_mults": (1,) * 12}, "downsamplings"),
        ({"compress": 1.5}, "compress"),
        ({"prior": "hrtf"}, "prior"),
        ({"temperature": -0.5}, "temperature"),
    ],
)
def test_config_validation(changes: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BinauralFlowConfig.preset("tiny").replace(**changes)


def test_unknown_preset_and_keys() -> None:
    with pytest.raises(ConfigError, match="unknown BinauralFlow preset"):
        BinauralFlowConfig.preset("huge")
    with pytest.raises(ConfigError, match="unknown BinauralFlow config keys: bogus"):
        BinauralFlowConfig.from_dict({"bogus": 1})
