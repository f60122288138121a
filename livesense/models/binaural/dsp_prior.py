"""The DSP prior's per-slot state: the centre a ``prior="dsp"`` flow starts from.

Each slot's mono goes through its own :class:`~livesense.audio.dsp_renderer.DspBinauralRenderer`
(geometric delay, 1/d, HRTF of the direct path; causal, latency 0) with the slot's poses; the
neural renderer streams that two-ear render through its STFT as the prior's centre and the
network's conditioning. One HRIR set (and its partition spectra) serves every slot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.hrtf import load_hrirs
from livesense.audio.trajectory import Trajectory

__all__ = ["DspPrior"]


class DspPrior:
    """One DSP renderer per slot; :meth:`render` maps (slots, 1, n) mono to (slots, 2, n)."""

    def __init__(
        self, sample_rate: int, speakers: Sequence[Trajectory], listeners: Sequence[Trajectory]
    ):
        hr = load_hrirs(None, sample_rate)
        cfg = DspRendererConfig(sample_rate=sample_rate)
        self.renderers = [
            DspBinauralRenderer(s, li, hrirs=hr, config=cfg)
            for s, li in zip(speakers, listeners, strict=True)
        ]

    def reset_slot(self, slot: int, speaker: Trajectory, listener: Trajectory) -> None:
        """A new stream in ``slot`` with these initial trajectories."""
        d = self.renderers[slot]
        d.speaker, d.listener = speaker, listener
        d.reset()

    def render(self, x: torch.Tensor) -> torch.Tensor:
        """(slots, 1, n) mono -> (slots, 2, n): each slot through its DSP renderer."""
        n = x.shape[-1]
        out = torch.zeros(len(self.renderers), 2, n)
        if n:
            xs = x.numpy()
            for s, d in enumerate(self.renderers):
                out[s] = torch.from_numpy(np.asarray(d.step(xs[s, 0]), dtype=np.float32))
        return out
