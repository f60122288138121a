"""The buffer bank: an NFE switch warms the new plan's history, continuous and converging."""

from __future__ import annotations

import numpy as np

from livesense.models.binaural.renderer import NeuralBinauralRenderer

HOP = 128


OVERLAP = 384


def max_steps(y: np.ndarray) -> np.ndarray:
    """Largest sample-to-sample step over both channels, per sample (n - 1,)."""
    return np.abs(np.diff(y, axis=-1)).max(axis=0)


def test_nfe_switch_is_continuous_and_converges(speech_like, model) -> None:
    x = speech_like(0.5)
    chunk, switch = 1024, 12 * 1024
    r = NeuralBinauralRenderer(model, nfe=6)
    outs = []
    for a in range(0, x.shape[0], chunk):
        if a == switch:
            r.set_nfe(1)
        outs.append(r.step(x[a : a + chunk]))
        if a == 0:
            assert r.last_nfe == 6
    assert r.last_nfe == 1 and r.stats.bank_warms == 1 and r.stats.nfe_changes == 1
    assert set(r.stats.frames_by_nfe) == {1, 6}
    outs.append(r.flush())
    y = np.concatenate([o for o in outs if o is not None], axis=-1)
    at = switch - OVERLAP  # first output sample with a frame rendered at NFE 1
    steps = max_steps(y)
    near = steps[at - 2 * HOP : at + 4 * HOP].max()
    typical = np.concatenate([steps[2000 : at - 1000], steps[at + 1000 :]]).max()
    assert near <= 3 * typical, (near, typical)
    # finite receptive field: once the history of the switch is gone, NFE-1 output is exact
    ref = NeuralBinauralRenderer(model, nfe=1).process(x)
    exact = (switch // HOP + model.receptive_field) * HOP
    assert np.abs(y[:, exact:] - ref[:, exact:]).max() < 1e-4
    assert np.abs(y[:, at : at + 4 * HOP] - ref[:, at : at + 4 * HOP]).max() > 1e-4
