"""The NFE policy: fewer evaluations when the renderer falls behind, more when calm."""

from __future__ import annotations

import pytest

from livesense.errors import ConfigError
from livesense.models.binaural.nfe import NfePolicy
from livesense.models.binaural.renderer import NeuralBinauralRenderer


def test_nfe_policy() -> None:
    p = NfePolicy(levels=(1, 6, 2, 4), high=0.8, low=0.4, patience=2)
    assert p.levels == (6, 4, 2, 1)
    assert p.update(6, 0.9, 1.0) == 4
    assert p.update(4, 2.0, 1.0) == 2
    assert p.update(1, 5.0, 1.0) == 1
    assert p.update(2, 0.1, 1.0) == 2 and p.update(2, 0.1, 1.0) == 4
    with pytest.raises(ConfigError):
        NfePolicy(levels=(0,))


def test_policy_lowers_nfe_when_behind(speech_like, model) -> None:
    r = NeuralBinauralRenderer(model, nfe=6, policy=NfePolicy(high=1e-9, low=0.0 + 1e-12))
    x = speech_like(0.1)
    for a in range(0, x.shape[0], 1024):
        r.step(x[a : a + 1024])
    assert r.nfe == 1 and r.stats.nfe_changes == 3
    with pytest.raises(ConfigError):
        r.set_nfe(0)
