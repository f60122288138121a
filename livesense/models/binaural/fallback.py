"""The one fallback: a neural renderer crossfaded to the DSP renderer and back, click-free.

Whoever needs to degrade (the server when a session misses its deadlines, a live device)
wraps the neural renderer in :class:`FallbackRenderer` and calls :meth:`~FallbackRenderer.use_dsp`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import Pose
from livesense.audio.trajectory import PoseControlled, Trajectory
from livesense.errors import ConfigError
from livesense.models.binaural.renderer import NeuralBinauralRenderer
from livesense.streaming.processor import Chunk, StreamProcessor

__all__ = ["FallbackRenderer"]


class FallbackRenderer(StreamProcessor, PoseControlled):
    """A neural renderer with a DSP fallback, crossfaded (``crossfade_ms``) in both directions.

    Both renderers see all input (the DSP one is cheap); the DSP output is delayed to the
    neural renderer's timing (``latency``/``granularity`` are the neural ones). :meth:`use_dsp`
    switches between chunks: to DSP, the network keeps running until the fade-out is done and
    is then bypassed; back to neural, the network restarts on fresh banks and is faded in once
    every frame overlapping the fade is its own plus ``warm_frames`` of warm-up.
    """

    def __init__(
        self,
        neural: NeuralBinauralRenderer,
        dsp: DspBinauralRenderer | None = None,
        crossfade_ms: float = 5.0,
        warm_frames: int = 4,
    ):
        cfg = neural.config
        if not (math.isfinite(crossfade_ms) and crossfade_ms >= 0):
            raise ConfigError(f"crossfade_ms must be >= 0, got {crossfade_ms}")
        self.neural = neural
        self.dsp = dsp or DspBinauralRenderer(
            neural.speaker, neural.listener, config=DspRendererConfig(sample_rate=cfg.sample_rate)
        )
        self.fade_len = round(crossfade_ms * cfg.sample_rate / 1000)
        self.warm_frames = warm_frames
        self.latency = neural.latency
        self.granularity = neural.granularity
        self.reset()

    @property
    def mode(self) -> str:
        """``"neural"`` or ``"dsp"``: what was last requested."""
        return self._mode

    @property
    def neural_weight(self) -> float:
        """Weight of the neural output at the last emitted sample (1 = neural only)."""
        return float(np.interp(self._n_out - 1, self._bp_x, self._bp_w))

    def reset(self) -> None:
        self.neural.reset()
        self.dsp.reset()
        self._pending = np.zeros((2, 0), dtype=np.float32)  # DSP output not yet emitted
        self._n_out = 0
        self._bp_x, self._bp_w = [0.0], [1.0]  # piecewise-linear neural weight per sample
        self._mode = "neural"
        self.dsp_samples = 0  # samples emitted with some DSP in them

    def set_speaker_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        self.neural.set_speaker_pose(pose, at_sample)
        self.dsp.set_speaker_pose(pose, at_sample)

    def set_listener_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        self.neural.set_listener_pose(pose, at_sample)
        self.dsp.set_listener_pose(pose, at_sample)

    def use_dsp(self, on: bool = True) -> None:
        """Fall back to the DSP renderer (``on``) or return to the neural one, from the next
        emitted sample (or, returning, once the network has warmed up)."""
        cfg = self.neural.config
        if on and self._mode == "neural":
            start = self._n_out
            self._fade(start, 0.0)
            end = start + self.fade_len  # neural weight is 0 from here on
            self.neural.set_bypass(-(-(end + cfg.latency) // cfg.hop))
            self._mode = "dsp"
        elif not on and self._mode == "dsp":
            f_next, stopped = self.neural.frame_index, self.neural.bypass_from
            self.neural.set_bypass(None)
            start = self._n_out
            if stopped is not None and stopped < f_next:  # network skipped frames: warm up
                start = max(start, (f_next + self.warm_frames) * cfg.hop)
            self._fade(start, 1.0)
            self._mode = "neural"

    def _fade(self, start: int, target: float) -> None:
        w = float(np.interp(start - 1, self._bp_x, self._bp_w))
        keep = [i for i, x in enumerate(self._bp_x) if x < start - 1]
        self._bp_x = [self._bp_x[i] for i in keep] + [start - 1.0, start + self.fade_len]
        self._bp_w = [self._bp_w[i] for i in keep] + [w, target]

    def _mix(self, y: np.ndarray | None) -> np.ndarray | None:
        if y is None or y.shape[-1] == 0:
            return None
        m = y.shape[-1]
        d = self._pending[:, :m]
        self._pending = self._pending[:, m:]
        w = np.interp(np.arange(self._n_out, self._n_out + m), self._bp_x, self._bp_w)
        w = w.astype(np.float32)
        self.dsp_samples += int(np.count_nonzero(w < 1.0))
        self._n_out += m
        # prune breakpoints left behind (keep the last one before the output position)
        while len(self._bp_x) > 2 and self._bp_x[1] < self._n_out - 1:
            del self._bp_x[0], self._bp_w[0]
        return (w * y + (1.0 - w) * d).astype(np.float32)

    def step(self, chunk: Chunk) -> Chunk | None:
        is_torch = isinstance(chunk, torch.Tensor)
        x = chunk.detach().cpu().numpy() if is_torch else np.asarray(chunk, dtype=np.float32)
        d = self.dsp.step(x)
        if d is not None:  # bounded: at most latency + granularity - 1 + len(chunk) samples
            self._pending = np.concatenate([self._pending, d], axis=-1)
        out = self._mix(self.neural.step(x))
        if out is None:
            return None
        return torch.from_numpy(out) if is_torch else out

    def flush(self) -> Chunk | None:
        y = self.neural.flush()
        out = self._mix(y)
        self.reset()
        return out
