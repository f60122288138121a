"""Streaming neural binaural renderer (BinauralFlow): mono + poses -> binaural, chunk by chunk.

Pipeline: :class:`~livesense.audio.stft.StftRoundtrip` (streaming STFT with padded end ->
spectral frames -> streaming ISTFT, exact-length output) with the flow-matching sampler as the
frame processor in the middle. Offline rendering (``process``) is the same code on a fresh
state, so streaming == offline for any chunking.

Timing (computed from the config): the U-Net is causal per frame and keeps the frame rate, so
``latency = n_fft - hop`` samples (8 ms at 512/128/48 kHz) and ``granularity = hop`` (2.7 ms):
worst-case wait 511 samples = 10.6 ms. Chunks of any length work; the live chunk (e.g. 2048
samples = 16 frames = 42.7 ms) only trades Python overhead against waiting.

Buffer bank. Each network evaluation of the solver (one flow time ``t``, one solver stage)
streams through its own :class:`~livesense.models.binaural.layers.StreamState`: the last
``k_t - 1`` input frames of every causal conv, preallocated ``(slots, C, F, k_t - 1)`` tensors
(plus one shared, preallocated work buffer per conv for chunks of up to ``max_frames``).
Banks are kept per :class:`SolverPlan` (one plan per NFE), one entry per evaluation, and each
bank records the frame index it is current for.

Variable NFE. Lowering (or raising) the NFE between chunks activates another plan's bank. If
it is not current (it was not evaluated on the latest frames), it is *warmed*: each of its
evaluations copies the history of the evaluation of the previous plan with the nearest flow
time (same layers, same shapes). The network's receptive field in time is finite
(``model.receptive_field`` frames per evaluation), so after at most ``nfe * (receptive_field
- 1)`` frames the output is exactly what the new plan renders offline; before that it uses
history of the same flow time from a neighbouring trajectory, which keeps the transition
continuous (zeroed history would look like a stream start). After a DSP fallback, whose frames
ran no network, banks are zeroed (a fresh start at the current frame) and the output is only
crossfaded in after a few frames of warm-up.

DSP prior. With ``config.prior == "dsp"`` each slot's mono first goes through its own
:class:`~livesense.audio.dsp_renderer.DspBinauralRenderer` (latency 0, the same poses), and the
STFT roundtrip carries that two-ear render: it is the prior's centre and the network's
conditioning. The DSP renderer is causal with no latency, so the timing above is unchanged.

Noise. The prior noise of frame ``i`` of a stream is ``randn(4, F)`` from
``torch.Generator().manual_seed(seed * 1_000_003 + i)``: keyed by the absolute frame index,
so chunking, batching and NFE changes never change which noise a frame gets. Sampling scales it
by ``sigma * temperature`` (``config.temperature``; training always uses ``sigma``).

Poses. Frame ``i`` uses the speaker/listener poses at its newest sample ``(i + 1) * hop - 1``
(no look-ahead); ``set_speaker_pose(pose, at_sample)`` applies to every frame whose newest
sample is ``>= at_sample``, i.e. from the frame that sample arrives in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import Pose, Trajectory, as_trajectory
from livesense.audio.hrtf import load_hrirs
from livesense.audio.stft import StftRoundtrip
from livesense.errors import ConfigError
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import channels_to_spec, prior, spec_to_channels
from livesense.models.binaural.layers import StreamState
from livesense.models.binaural.solvers import SolverPlan, make_plan, solve
from livesense.models.binaural.unet import BinauralFlowUNet
from livesense.streaming.processor import Chunk, StreamProcessor

__all__ = [
    "DEFAULT_LISTENER",
    "DEFAULT_SPEAKER",
    "BatchedNeuralRenderer",
    "FallbackRenderer",
    "NeuralBinauralRenderer",
    "NfePolicy",
    "RenderStats",
    "random_model",
]

DEFAULT_SPEAKER = Pose((1.0, 0.0, 0.0))  # 1 m straight ahead
DEFAULT_LISTENER = Pose()
NOISE_KEY = 1_000_003
Track = list[tuple[float, Trajectory]]  # (first sample it applies to, trajectory), sorted


# ----------------------------------------------------------------------------- helpers


def _eval_track(track: Track, samples: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Poses (T, 7) (x, y, z, qx, qy, qz, qw) of a scheduled trajectory at samples (T,)
    (compared with the schedule) and times t (T,) in seconds (passed to the trajectories)."""
    first = track[0][1].at(t)
    out = np.concatenate([first.positions, first.orientations], axis=1)
    for start, traj in track[1:]:
        m = samples >= start
        if np.any(m):
            sub = traj.at(t[m])
            out[m] = np.concatenate([sub.positions, sub.orientations], axis=1)
    return out


def _schedule(track: Track, pose: Pose | Trajectory, start: float) -> None:
    kept = [(s, tr) for s, tr in track if s != start]
    kept.append((start, as_trajectory(pose)))
    kept.sort(key=lambda e: e[0])
    track[:] = kept


def _prune(track: Track, next_sample: int) -> None:
    """Drop entries no frame from ``next_sample`` on can use."""
    while len(track) > 1 and track[1][0] <= next_sample:
        del track[0]


@dataclass
class NfePolicy:
    """Deadline-driven NFE: one level down when a step took more than ``high`` x the audio it
    rendered, one level up after ``patience`` steps below ``low`` x."""

    levels: tuple[int, ...] = (6, 4, 2, 1)
    high: float = 0.8
    low: float = 0.4
    patience: int = 8
    _calm: int = 0

    def __post_init__(self) -> None:
        if not self.levels or any(not isinstance(v, int) or v < 1 for v in self.levels):
            raise ConfigError(f"NfePolicy.levels must be ints >= 1, got {self.levels!r}")
        if not (0 < self.low < self.high):
            raise ConfigError(f"NfePolicy needs 0 < low < high, got {self.low}, {self.high}")
        self.levels = tuple(sorted(set(self.levels), reverse=True))

    def update(self, nfe: int, elapsed_s: float, audio_s: float) -> int:
        """The NFE for the next chunk given the last step's compute time and audio length."""
        if audio_s <= 0:
            return nfe
        load = elapsed_s / audio_s
        if load > self.high:
            self._calm = 0
            lower = [v for v in self.levels if v < nfe]
            return lower[0] if lower else nfe
        if load < self.low:
            self._calm += 1
            if self._calm >= self.patience:
                self._calm = 0
                higher = [v for v in self.levels if v > nfe]
                return higher[-1] if higher else nfe
            return nfe
        self._calm = 0
        return nfe


@dataclass
class RenderStats:
    """Counters since the last reset (frames are per slot, lock-step)."""

    steps: int = 0
    frames: int = 0  # frames rendered by the network
    bypassed_frames: int = 0  # frames skipped during a DSP fallback
    evaluations: int = 0  # network calls (one per solver evaluation per chunk piece)
    frames_by_nfe: dict[int, int] = field(default_factory=dict)
    nfe_changes: int = 0
    bank_warms: int = 0  # plan switches warmed from the previous plan's history
    bank_resets: int = 0  # plan banks zeroed (after a fallback)
    last_step_s: float = 0.0  # wall time of the last step


@dataclass
class _PlanBank:
    """Buffer bank of one solver plan: ``hist[j]`` is evaluation ``j``'s per-conv history."""

    plan: SolverPlan
    hist: list[list[torch.Tensor]]  # [evaluation][conv] (slots, C, F, k_t - 1)
    frame: int  # the next frame index this bank is current for (-1: stale)


class _FlowFrames(StreamProcessor):
    """The middle of the STFT roundtrip: input spectra (N, C, F, T) -> binaural (N, 2, F, T)."""

    def __init__(self, owner: BatchedNeuralRenderer):
        self.owner = owner

    def step(self, chunk: Chunk) -> torch.Tensor | None:
        return self.owner._render_frames(chunk)

    def reset(self) -> None:  # the owner resets its own state
        pass


# ----------------------------------------------------------------------------- renderers


class BatchedNeuralRenderer(StreamProcessor):
    """``slots`` independent streams rendered in one batched network call per evaluation.

    ``step`` takes ``(slots, 1, n)`` (or ``(slots, n)``) float audio, numpy or torch, and
    returns ``(slots, 2, m)``: slots advance in lock-step with equal chunk lengths. Each slot has
    its own poses, seed and stream origin; :meth:`reset_slot` starts a new stream in one slot
    without touching the others. One model copy serves all slots (and all renderers).
    """

    def __init__(
        self,
        model: BinauralFlowUNet,
        slots: int = 1,
        speaker: Pose | Trajectory = DEFAULT_SPEAKER,
        listener: Pose | Trajectory = DEFAULT_LISTENER,
        nfe: int | None = None,
        solver: str | None = None,
        seed: int = 0,
        max_frames: int = 16,
        policy: NfePolicy | None = None,
    ):
        if not isinstance(slots, int) or slots < 1:
            raise ConfigError(f"slots must be an int >= 1, got {slots!r}")
        if not isinstance(max_frames, int) or max_frames < 1:
            raise ConfigError(f"max_frames must be an int >= 1, got {max_frames!r}")
        self.model = model
        self.config = cfg = model.config
        self.slots = slots
        self.solver = solver or cfg.solver
        self.max_frames = max_frames
        self.policy = policy
        self.latency = cfg.latency
        self.granularity = cfg.granularity
        self._roundtrip = StftRoundtrip(cfg.stft, middle=[_FlowFrames(self)])
        self._speaker0 = [as_trajectory(speaker)] * slots
        self._listener0 = [as_trajectory(listener)] * slots
        self._dsp: list[DspBinauralRenderer] = []
        if cfg.prior == "dsp":  # the prior's centre: one DSP renderer per slot
            hr = load_hrirs(None, cfg.sample_rate)
            dcfg = DspRendererConfig(sample_rate=cfg.sample_rate)
            self._dsp = [
                DspBinauralRenderer(self._speaker0[s], self._listener0[s], hrirs=hr, config=dcfg)
                for s in range(slots)
            ]
        self._seed = [int(seed)] * slots
        self._banks: dict[int, _PlanBank] = {}
        self._last_torch = False
        with torch.inference_mode():
            self._scratch = model.init_scratch(slots, max_frames)
        self._nfe = cfg.nfe if nfe is None else nfe
        make_plan(self._nfe, self.solver, cfg.schedule_steps, cfg.t0)  # validates
        for n in {self._nfe, *(policy.levels if policy else ())}:
            self._ensure_bank(n)
        self.reset()

    # ------------------------------------------------------------------ public API

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def latency_s(self) -> float:
        return self.latency / self.config.sample_rate

    @property
    def nfe(self) -> int:
        """NFE the next chunk will use."""
        return self._nfe

    @property
    def frame_index(self) -> int:
        """Index of the next STFT frame to be rendered (global, lock-step)."""
        return self._frame

    @property
    def n_in(self) -> int:
        """Samples consumed per slot since the last reset."""
        return self._roundtrip.n_in

    def set_nfe(self, nfe: int) -> None:
        """Use ``nfe`` network evaluations per frame from the next chunk on (>= 1)."""
        make_plan(nfe, self.solver, self.config.schedule_steps, self.config.t0)  # validates
        if nfe != self._nfe:
            self.stats.nfe_changes += 1
            self._nfe = nfe
            self._ensure_bank(nfe)

    def set_speaker_pose(
        self, pose: Pose | Trajectory, at_sample: int | None = None, slot: int = 0
    ) -> None:
        """Move the speaker of ``slot`` to ``pose`` (or onto a trajectory) from the frame in
        which slot-input sample ``at_sample`` arrives (default: the next sample)."""
        self._check_slot(slot)
        _schedule(self._speaker[slot], pose, self._slot_sample(slot, at_sample))
        if self._dsp:
            self._dsp[slot].set_speaker_pose(pose, at_sample)  # slot-input samples

    def set_listener_pose(
        self, pose: Pose | Trajectory, at_sample: int | None = None, slot: int = 0
    ) -> None:
        """Move/turn the listener of ``slot`` from slot-input sample ``at_sample`` on."""
        self._check_slot(slot)
        _schedule(self._listener[slot], pose, self._slot_sample(slot, at_sample))
        if self._dsp:
            self._dsp[slot].set_listener_pose(pose, at_sample)  # slot-input samples

    def set_bypass(self, from_frame: int | None) -> None:
        """Skip the network from frame ``from_frame`` on (their spectra are zero) until called
        with None; used by :class:`FallbackRenderer`. Banks go stale and are zeroed on resume."""
        self._bypass_from = None if from_frame is None else int(from_frame)

    @property
    def bypass_from(self) -> int | None:
        return self._bypass_from

    def reset(self) -> None:
        """Fresh streams in every slot (scheduled pose updates are dropped)."""
        with torch.inference_mode():
            self._roundtrip.reset()
            for bank in self._banks.values():
                for hs in bank.hist:
                    for h in hs:
                        h.zero_()
                bank.frame = 0
        self._frame = 0
        self._n_out = 0
        self._last_bank: _PlanBank | None = None
        self._bypass_from: int | None = None
        self._frame0 = [0] * self.slots  # global frame at which each slot's stream starts
        self._prefix = [0] * self.slots  # zeros before the slot's first sample in that frame
        self._start = [0] * self.slots  # global sample of each slot's first input sample
        self._speaker: list[Track] = [[(-math.inf, tr)] for tr in self._speaker0]
        self._listener: list[Track] = [[(-math.inf, tr)] for tr in self._listener0]
        self.stats = RenderStats()
        self.last_nfe: int | None = None
        for slot in range(len(self._dsp)):
            self._reset_dsp(slot)

    def reset_slot(
        self,
        slot: int,
        speaker: Pose | Trajectory | None = None,
        listener: Pose | Trajectory | None = None,
        seed: int | None = None,
    ) -> None:
        """Start a new stream in ``slot`` at the current (global) position; other slots go on.

        The slot's new input sample ``k`` comes out at global output index ``n_in + k`` (the
        slot's output before that is muted: it belongs to the old stream's unfinished tail).
        When ``n_in`` is not a multiple of ``hop`` the new stream is rendered as if preceded by
        ``n_in % hop`` zeros, which keeps every slot on the same frame grid."""
        self._check_slot(slot)
        g, hop = self._roundtrip.n_in, self.config.hop
        with torch.inference_mode():
            stft, istft = self._roundtrip.processors[0], self._roundtrip.processors[-1]
            if stft.state is not None:
                st, c = stft.state, self._in_channels
                st.bufs[st.cur][c * slot : c * slot + c, : st.n_hist] = 0.0
            if istft.state is not None:
                istft.state.acc[2 * slot : 2 * slot + 2] = 0.0
            for bank in self._banks.values():
                for hs in bank.hist:
                    for h in hs:
                        h[slot].zero_()
        if speaker is not None:
            self._speaker0[slot] = as_trajectory(speaker)
        if listener is not None:
            self._listener0[slot] = as_trajectory(listener)
        if seed is not None:
            self._seed[slot] = int(seed)
        self._frame0[slot], self._prefix[slot], self._start[slot] = g // hop, g % hop, g
        self._speaker[slot] = [(-math.inf, self._speaker0[slot])]
        self._listener[slot] = [(-math.inf, self._listener0[slot])]
        if self._dsp:
            self._reset_dsp(slot)

    def step(self, chunk: Chunk) -> Chunk | None:
        """Consume ``(slots, 1, n)`` audio; return ``(slots, 2, m)`` (None: nothing ready)."""
        is_torch = isinstance(chunk, torch.Tensor)
        y = self._step(self._as_batch(chunk))
        return None if y is None else self._out(y, is_torch)

    def step_batch(self, chunks: Sequence[Chunk | None] | Chunk) -> np.ndarray:
        """Numpy convenience: a list of per-slot mono chunks (None = silence for an idle slot,
        all others of one length) or a ``(slots, 1, n)`` array -> ``(slots, 2, m)`` float32."""
        if isinstance(chunks, np.ndarray | torch.Tensor):
            x = self._as_batch(chunks)
        else:
            if len(chunks) != self.slots:
                raise ValueError(f"expected {self.slots} chunks, got {len(chunks)}")
            arrs = [
                None if c is None else np.asarray(c, dtype=np.float32).reshape(-1) for c in chunks
            ]
            lengths = {a.shape[0] for a in arrs if a is not None}
            if len(lengths) > 1:
                raise ValueError(f"slots advance in lock-step: chunk lengths differ {lengths}")
            n = lengths.pop() if lengths else 0
            x = torch.zeros(self.slots, 1, n)
            for i, a in enumerate(arrs):
                if a is not None:
                    x[i, 0] = torch.from_numpy(a)
        y = self._step(x)
        if y is None:
            return np.zeros((self.slots, 2, 0), dtype=np.float32)
        return y.numpy()

    def flush(self) -> Chunk | None:
        """End every slot's stream: the remaining ``(slots, 2, rest)``; then a fresh state."""
        with torch.inference_mode():
            y = self._roundtrip.flush()
            if y is not None:
                y = self._mute(y)
        self.reset()
        return None if y is None else self._out(y, self._last_torch)

    # ------------------------------------------------------------------ internals

    def _check_slot(self, slot: int) -> None:
        if not (0 <= slot < self.slots):
            raise ValueError(f"slot {slot} out of range 0..{self.slots - 1}")

    @property
    def _in_channels(self) -> int:
        """Channels entering the STFT per slot: mono, or the DSP render's two ears."""
        return 2 if self._dsp else 1

    def _reset_dsp(self, slot: int) -> None:
        d = self._dsp[slot]
        d.speaker, d.listener = self._speaker0[slot], self._listener0[slot]
        d.reset()

    def _dsp_render(self, x: torch.Tensor) -> torch.Tensor:
        """(slots, 1, n) mono -> (slots, 2, n): each slot through its DSP renderer."""
        n = x.shape[-1]
        out = torch.zeros(self.slots, 2, n)
        if n:
            xs = x.numpy()
            for s, d in enumerate(self._dsp):
                out[s] = torch.from_numpy(np.asarray(d.step(xs[s, 0]), dtype=np.float32))
        return out

    def _slot_sample(self, slot: int, at_sample: int | None) -> float:
        """A slot-input sample number in the slot's frame-grid coordinates (prefix included)."""
        local = self._roundtrip.n_in - self._start[slot] if at_sample is None else int(at_sample)
        return float(local + self._prefix[slot])

    def _as_batch(self, chunk: Chunk) -> torch.Tensor:
        self._last_torch = isinstance(chunk, torch.Tensor)
        x = chunk.detach() if self._last_torch else torch.from_numpy(np.asarray(chunk))
        if x.dim() == 2:
            x = x[:, None, :]
        if x.dim() != 3 or x.shape[0] != self.slots or x.shape[1] != 1:
            raise ValueError(
                f"expected mono audio shaped ({self.slots}, 1, n), got {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise TypeError(f"expected float audio, got {x.dtype}")
        return x.to(torch.float32)

    def _out(self, y: torch.Tensor, is_torch: bool) -> Chunk:
        return y.clone() if is_torch else y.numpy()

    def _mute(self, y: torch.Tensor) -> torch.Tensor:
        """Zero each slot's output before its stream start; advance the output counter."""
        m = y.shape[-1]
        for s in range(self.slots):
            k = self._start[s] - self._n_out
            if k > 0:
                y[s, :, : min(k, m)] = 0.0
        self._n_out += m
        return y

    def _step(self, x: torch.Tensor) -> torch.Tensor | None:
        t_start = time.perf_counter()
        frames_before = self.stats.frames
        with torch.inference_mode():
            y = self._roundtrip.step(self._dsp_render(x) if self._dsp else x)
            if y is not None:
                y = self._mute(y)
        elapsed = time.perf_counter() - t_start
        self.stats.steps += 1
        self.stats.last_step_s = elapsed
        rendered = self.stats.frames - frames_before
        if self.policy is not None and rendered:
            audio_s = rendered * self.config.hop / self.config.sample_rate
            self.set_nfe(self.policy.update(self._nfe, elapsed, audio_s))
        return y

    def _ensure_bank(self, nfe: int) -> _PlanBank:
        if nfe not in self._banks:
            cfg = self.config
            plan = make_plan(nfe, self.solver, cfg.schedule_steps, cfg.t0)
            with torch.inference_mode():
                hist = [self.model.init_hist(self.slots) for _ in range(plan.nfe)]
            self._banks[nfe] = _PlanBank(plan, hist, frame=-1)
        return self._banks[nfe]

    def _bank_for(self, frame: int) -> _PlanBank:
        """The active plan's bank, made current for ``frame`` (warmed or zeroed if stale)."""
        bank = self._ensure_bank(self._nfe)
        if bank.frame == frame:
            return bank
        src = self._last_bank
        if src is not None and src is not bank and src.frame == frame:
            src_t = np.array(src.plan.eval_times)
            for j, t in enumerate(bank.plan.eval_times):
                jj = int(np.argmin(np.abs(src_t - t)))
                for h, h_src in zip(bank.hist[j], src.hist[jj], strict=True):
                    h.copy_(h_src)
            self.stats.bank_warms += 1
        else:
            for hs in bank.hist:
                for h in hs:
                    h.zero_()
            self.stats.bank_resets += 1
        bank.frame = frame
        return bank

    def _render_frames(self, spec: torch.Tensor) -> torch.Tensor:
        """Mono spectra (N, 1, F, T) complex -> binaural spectra (N, 2, F, T) complex."""
        n_frames = spec.shape[-1]
        out = torch.zeros(
            self.slots, 2, spec.shape[-2], n_frames, dtype=spec.dtype, device=spec.device
        )
        a = 0
        while a < n_frames:
            n = min(n_frames - a, self.max_frames)
            if self._bypass_from is not None:
                if self._frame >= self._bypass_from:
                    self._frame += n  # bypassed: zero spectra, no network, banks go stale
                    self.stats.bypassed_frames += n
                    a += n
                    continue
                n = min(n, self._bypass_from - self._frame)
            out[..., a : a + n] = self._render_piece(spec[..., a : a + n])
            a += n
        return out

    def _render_piece(self, spec: torch.Tensor) -> torch.Tensor:
        """Solve the flow for n <= max_frames frames: (N, C, F, n) -> (N, 2, F, n) complex
        (C = 1: mono spectra; C = 2: the DSP render's, for a ``"dsp"`` prior)."""
        cfg, model = self.config, self.model
        n_slots, n_in, n_bins, n = spec.shape
        f = self._frame
        cond = spec_to_channels(spec, cfg.compress, cfg.spec_scale)  # (N, C, 2, F, n)
        cond = cond.reshape(n_slots, 2 * n_in, n_bins, n)  # (N, 2 or 4, F, n)
        noise = self._noise(f, n, n_bins)
        z = prior(cond, noise, cfg.sigma * cfg.temperature)  # (N, 4, F, n)
        pose_emb = model.cond.embed_poses(self._poses(f, n))  # (N, n, E)
        bank = self._bank_for(f)
        states = [StreamState(h, self._scratch) for h in bank.hist]

        def velocity(x: torch.Tensor, t: float, j: int) -> torch.Tensor:
            return model(x, cond, t, state=states[j], pose_emb=pose_emb)

        x = solve(velocity, z, bank.plan)  # (N, 4, F, n)
        bank.frame = f + n
        self._last_bank = bank
        self._frame = f + n
        st = self.stats
        st.frames += n
        st.evaluations += bank.plan.nfe
        st.frames_by_nfe[bank.plan.nfe] = st.frames_by_nfe.get(bank.plan.nfe, 0) + n
        self.last_nfe = bank.plan.nfe
        for s in range(self.slots):
            nxt = (f + n - self._frame0[s] + 1) * cfg.hop - 1
            _prune(self._speaker[s], nxt)
            _prune(self._listener[s], nxt)
        y = channels_to_spec(x.reshape(n_slots, 2, 2, n_bins, n), cfg.compress, cfg.spec_scale)
        return y  # (N, 2, F, n)

    def _noise(self, frame: int, n: int, n_bins: int) -> torch.Tensor:
        """Prior noise (N, 4, F, n), keyed by (slot seed, slot-local frame index)."""
        out = torch.empty(self.slots, 4, n_bins, n)
        g = torch.Generator()
        for s in range(self.slots):
            local = frame - self._frame0[s]
            for i in range(n):
                g.manual_seed((self._seed[s] * NOISE_KEY + local + i) & 0x7FFF_FFFF_FFFF_FFFF)
                out[s, :, :, i] = torch.randn(4, n_bins, generator=g)
        return out

    def _poses(self, frame: int, n: int) -> torch.Tensor:
        """Speaker + listener poses (N, 14, n) at each frame's newest sample."""
        hop, sr = self.config.hop, self.config.sample_rate
        out = np.empty((self.slots, 14, n))
        for s in range(self.slots):
            local = frame - self._frame0[s] + np.arange(n)
            stamp = np.maximum((local + 1) * hop - 1, 0)  # slot frame-grid samples
            t_samples = np.maximum(stamp - self._prefix[s], 0)  # slot-input samples (time)
            t = t_samples / float(sr)
            out[s, :7] = _eval_track(self._speaker[s], stamp, t).T
            out[s, 7:] = _eval_track(self._listener[s], stamp, t).T
        return torch.from_numpy(out).to(torch.float32)


class NeuralBinauralRenderer(BatchedNeuralRenderer):
    """One stream: mono ``(n,)`` / ``(1, n)`` float (numpy or torch) -> binaural ``(2, m)``.

    ``latency = n_fft - hop`` samples, ``granularity = hop``; ``flush`` emits the tail so the
    whole output has exactly as many samples as the input (like the DSP renderer's contract).
    """

    def __init__(
        self,
        model: BinauralFlowUNet,
        speaker: Pose | Trajectory = DEFAULT_SPEAKER,
        listener: Pose | Trajectory = DEFAULT_LISTENER,
        nfe: int | None = None,
        solver: str | None = None,
        seed: int = 0,
        max_frames: int = 16,
        policy: NfePolicy | None = None,
    ):
        super().__init__(model, 1, speaker, listener, nfe, solver, seed, max_frames, policy)

    @property
    def speaker(self) -> Trajectory:
        return self._speaker0[0]

    @property
    def listener(self) -> Trajectory:
        return self._listener0[0]

    def step(self, chunk: Chunk) -> Chunk | None:
        """Consume mono ``(n,)`` or ``(1, n)``; return ``(2, m)`` (None when nothing is ready)."""
        shape = tuple(chunk.shape)
        if len(shape) == 2 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) != 1:
            raise ValueError(f"expected mono audio shaped (n,) or (1, n), got {tuple(chunk.shape)}")
        y = super().step(chunk.reshape(1, 1, shape[0]))
        return None if y is None else y[0]

    def flush(self) -> Chunk | None:
        y = super().flush()
        return None if y is None else y[0]

    @classmethod
    def from_checkpoint(
        cls,
        path: str | Path,
        speaker: Pose | Trajectory = DEFAULT_SPEAKER,
        listener: Pose | Trajectory = DEFAULT_LISTENER,
        nfe: int | None = None,
        **kwargs,
    ) -> NeuralBinauralRenderer:
        """A renderer for the checkpoint at ``path`` (directory or ``model.safetensors``)."""
        from livesense.models.binaural.checkpoint import load_checkpoint

        model, _ = load_checkpoint(path)
        return cls(model, speaker=speaker, listener=listener, nfe=nfe, **kwargs)

    @classmethod
    def random(
        cls,
        preset: str | BinauralFlowConfig = "small",
        seed: int = 0,
        speaker: Pose | Trajectory = DEFAULT_SPEAKER,
        listener: Pose | Trajectory = DEFAULT_LISTENER,
        nfe: int | None = None,
        **kwargs,
    ) -> NeuralBinauralRenderer:
        """A renderer with randomly initialised weights (seeded): for tests and benchmarks."""
        model = random_model(preset, seed)
        return cls(model, speaker=speaker, listener=listener, nfe=nfe, seed=seed, **kwargs)


def random_model(preset: str | BinauralFlowConfig = "small", seed: int = 0) -> BinauralFlowUNet:
    """A seeded, randomly initialised model (global RNG state untouched)."""
    cfg = preset if isinstance(preset, BinauralFlowConfig) else BinauralFlowConfig.preset(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BinauralFlowUNet(cfg)
    return model.eval()


# ----------------------------------------------------------------------------- fallback


class FallbackRenderer(StreamProcessor):
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
