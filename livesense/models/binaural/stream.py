"""One stream of the render engine: mono chunks of any length in, binaural out, poses, bypass.

:class:`SlotStream` is what a session, ``mic`` or ``replay`` holds: a
:class:`~livesense.streaming.processor.StreamProcessor` over one engine slot with the same
contract as :class:`~.renderer.NeuralBinauralRenderer` (``latency = n_fft - hop``; ``flush``
emits the tail so the output has exactly as many samples as the input; the same frames, poses
and noise, so its output equals that renderer's), which also makes it a drop-in for
:class:`~.fallback.FallbackRenderer`. It gathers input into engine blocks, evaluates the pose
schedules on the host (the static case is cached), packs each block into one row (audio,
poses, counters) and waits for the engine's tick. ``close`` frees the slot.

Poses: frame ``i`` uses the poses at its newest sample ``(i + 1) * hop - 1``; the DSP prior's
block boundaries ``k * hop`` are evaluated when their block is submitted, the boundary that
ends a block is kept for the next one (as :class:`~livesense.audio.dsp_renderer.DspBinauralRenderer`
does). Bypass (the fallback's DSP mode): blocks from the bypass frame on are not submitted
and come out silent; on return the slot restarts on fresh state at the same stream position.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from livesense.audio.geometry import Pose
from livesense.audio.trajectory import (
    PoseControlled,
    PoseSchedule,
    StaticTrajectory,
    Trajectory,
    as_trajectory,
)
from livesense.streaming.processor import Chunk, StreamProcessor

if TYPE_CHECKING:
    from livesense.models.binaural.engine import RenderEngine

__all__ = ["SlotStream"]


def _pose_rows(sp: PoseSchedule, li: PoseSchedule, samples: np.ndarray, sr: float) -> np.ndarray:
    """(T, 14): speaker position, quaternion, listener position, quaternion at ``samples``."""
    t = samples / sr
    a, b = sp.at(samples, t), li.at(samples, t)
    return np.concatenate([a.positions, a.orientations, b.positions, b.orientations], axis=1)


class SlotStream(StreamProcessor, PoseControlled):
    """Mono ``(n,)`` / ``(1, n)`` float -> binaural ``(2, m)`` float32 through an engine slot."""

    def __init__(
        self,
        engine: RenderEngine,
        slot: int,
        gen: int,
        speaker: Pose | Trajectory,
        listener: Pose | Trajectory,
        seed: int = 0,
    ):
        self.engine = engine
        self.slot, self._gen = slot, gen
        self.config = cfg = engine.config
        self.latency = cfg.latency
        self.granularity = engine.block
        self.sample_rate = cfg.sample_rate
        self._speaker0, self._listener0 = as_trajectory(speaker), as_trajectory(listener)
        self.seed = int(seed) & ((1 << 53) - 1)  # travels in a float64 row
        self._layout = engine.kernel.layout
        self._frame_stamps = (np.arange(engine.frames) + 1) * cfg.hop - 1  # + n0
        self._dsp = engine.kernel.has_dsp
        self._bounds = np.arange(1, self._layout.dsp_blocks + 1) * cfg.hop  # + n0
        self.closed = False
        self._init_stream()

    # ------------------------------------------------------------------ state

    def _init_stream(self) -> None:
        self._buf = np.zeros(0, dtype=np.float32)  # input not yet a whole block
        self.n_in = 0  # samples consumed
        self._blocks = 0  # blocks rendered or bypassed
        self._emitted = 0  # output samples returned
        self._speaker = PoseSchedule(self._speaker0)
        self._listener = PoseSchedule(self._listener0)
        self._bound0: np.ndarray | None = None  # DSP boundary pose ending the last block
        self._bypass_from: int | None = None
        self._stale = False  # state skipped blocks (bypass): restart the slot on resume
        self._static: tuple[object, object, np.ndarray] | None = None

    @property
    def frame_index(self) -> int:
        """Index of the next STFT frame to be rendered."""
        return self._blocks * self.engine.frames

    @property
    def bypass_from(self) -> int | None:
        return self._bypass_from

    @property
    def speaker(self) -> Trajectory:
        return self._speaker0

    @property
    def listener(self) -> Trajectory:
        return self._listener0

    def set_bypass(self, from_frame: int | None) -> None:
        """Skip the network from frame ``from_frame`` on (silent output) until called with
        None (see :class:`~.fallback.FallbackRenderer`)."""
        self._bypass_from = None if from_frame is None else int(from_frame)

    def set_speaker_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        self._speaker.set(pose, float(self.n_in if at_sample is None else int(at_sample)))

    def set_listener_pose(self, pose: Pose | Trajectory, at_sample: int | None = None) -> None:
        self._listener.set(pose, float(self.n_in if at_sample is None else int(at_sample)))

    def reset(self) -> None:
        """A fresh stream in the same slot."""
        self.engine.reset_slot(self.slot, self._gen)
        self._init_stream()

    def close(self) -> None:
        """Free the slot (idempotent)."""
        if not self.closed:
            self.closed = True
            self.engine.release(self.slot, self._gen)

    # ------------------------------------------------------------------ streaming

    def step(self, chunk: Chunk) -> Chunk | None:
        """Consume mono ``(n,)`` or ``(1, n)``; return ``(2, m)`` (None when nothing is ready)."""
        is_torch = isinstance(chunk, torch.Tensor)
        x = chunk.detach().cpu().numpy() if is_torch else np.asarray(chunk)
        if x.ndim == 2 and x.shape[0] == 1:
            x = x[0]
        if x.ndim != 1:
            raise ValueError(f"expected mono audio shaped (n,) or (1, n), got {tuple(x.shape)}")
        self.n_in += x.shape[0]
        block = self.engine.block
        buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        cut = buf.shape[0] // block * block
        self._buf = buf[cut:]
        jobs = [(buf[i : i + block], block) for i in range(0, cut, block)]
        return self._emit(self._render(jobs), None, is_torch)

    def flush(self) -> Chunk | None:
        """End the stream: the rest of the output (the latency tail), then a fresh stream."""
        block, rest = self.engine.block, self._buf
        jobs, blocks = [], self._blocks
        while blocks * block - self.latency < self.n_in:  # zero-padded blocks until covered
            audio = np.zeros(block, dtype=np.float32)
            audio[: rest.shape[0]] = rest
            jobs.append((audio, rest.shape[0]))
            rest = rest[:0]
            blocks += 1
        out = self._emit(self._render(jobs), self.n_in - self._emitted, False)
        self.reset()
        return out

    def _emit(self, y: np.ndarray | None, limit: int | None, is_torch: bool) -> Chunk | None:
        """The new output after the stream's first ``latency`` samples (the STFT padding)."""
        if y is None:
            return None
        raw_before = self._blocks * self.engine.block - y.shape[1]
        y = y[:, max(0, self.latency - raw_before) :]
        if limit is not None:
            y = y[:, :limit]
        self._emitted += y.shape[1]
        if y.shape[1] == 0:
            return None
        return torch.from_numpy(y) if is_torch else y

    def _render(self, jobs: list[tuple[np.ndarray, int]]) -> np.ndarray | None:
        """Submit blocks (audio, valid samples) in order; their output ``(2, n * block)``."""
        if not jobs:
            return None
        block, k = self.engine.block, self.engine.frames
        outs = []
        for audio, valid in jobs:
            f = self._blocks * k
            if self._bypass_from is not None and f >= self._bypass_from:
                outs.append(np.zeros((2, block), dtype=np.float32))
                self._stale = True
            else:
                if self._stale:  # back from a bypass: fresh state at this position
                    self.engine.reset_slot(self.slot, self._gen)
                    self._bound0 = None
                    self._stale = False
                n0 = self._blocks * block
                row = np.empty(self._layout.width)
                poses, dsp = self._poses(n0)
                self._layout.pack(row, audio, poses, dsp, self.slot, f, self.seed, valid)
                self._speaker.prune(n0 + block)
                self._listener.prune(n0 + block)
                req = None if self.closed else self.engine.submit(self.slot, self._gen, row)
                if req is None:  # closed (by the session, perhaps from another thread)
                    self.closed = True
                    outs.append(np.zeros((2, block), dtype=np.float32))
                else:
                    outs.append(self.engine.wait(req))
            self._blocks += 1
        return np.concatenate(outs, axis=1)

    def _poses(self, n0: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Frame poses (K, 14) and DSP boundary poses (D + 1, 14) of the block at ``n0``."""
        sp, li = self._speaker.only, self._listener.only
        if isinstance(sp, StaticTrajectory) and isinstance(li, StaticTrajectory):
            if self._static is None or self._static[0] is not sp or self._static[1] is not li:
                one = _pose_rows(self._speaker, self._listener, np.zeros(1), self.sample_rate)
                self._static = (sp, li, one)
            one = self._static[2]
            k, d = self.engine.frames, self._layout.dsp_blocks + 1
            dsp = np.repeat(one, d, axis=0) if self._dsp else None
            if self._dsp:
                if self._bound0 is not None:
                    dsp[0] = self._bound0
                self._bound0 = one[0]
            return np.repeat(one, k, axis=0), dsp
        sr = float(self.sample_rate)
        frames = _pose_rows(self._speaker, self._listener, n0 + self._frame_stamps, sr)
        if not self._dsp:
            return frames, None
        first = np.array([n0], dtype=np.float64)
        bounds = _pose_rows(self._speaker, self._listener, n0 + self._bounds, sr)
        head = (
            self._bound0[None]
            if self._bound0 is not None
            else _pose_rows(self._speaker, self._listener, first, sr)
        )
        self._bound0 = bounds[-1]
        return frames, np.concatenate([head, bounds])
