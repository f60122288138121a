"""Batched streaming BinauralFlow: ``slots`` streams of mono + poses -> binaural, one network
call per evaluation for all of them (:class:`NeuralBinauralRenderer` in :mod:`.renderer` is the
one-stream case).

Pipeline: :class:`~livesense.audio.stft.StftRoundtrip` (streaming STFT with padded end ->
spectral frames -> streaming ISTFT, exact-length output) with the flow-matching sampler as the
frame processor in the middle. Offline rendering (``process``) is the same code on a fresh
state, so streaming == offline for any chunking.

Timing (computed from the config): the U-Net is causal per frame and keeps the frame rate, so
``latency = n_fft - hop`` samples (8 ms at 512/128/48 kHz) and ``granularity = hop`` (2.7 ms):
worst-case wait 511 samples = 10.6 ms. Chunks of any length work; the live chunk (e.g. 2048
samples = 16 frames = 42.7 ms) only trades Python overhead against waiting.

Buffer bank and variable NFE (:mod:`.bank`). Each solver evaluation streams through its own
per-layer history, one bank per NFE (plus one shared, preallocated work buffer per conv for
chunks of up to ``max_frames``). Lowering or raising the NFE between chunks activates another
plan's bank, warmed from the previous plan's history of the nearest flow time: the network's
receptive field in time is finite (``model.receptive_field`` frames per evaluation), so after
at most ``nfe * (receptive_field - 1)`` frames the output is exactly what the new plan renders
offline, and the transition stays continuous meanwhile. After a DSP fallback, whose frames ran
no network, banks are zeroed and the output is crossfaded in after a few frames of warm-up.

DSP prior. With ``config.prior == "dsp"`` each slot's mono first goes through its own DSP
renderer (:mod:`.dsp_prior`; latency 0, the same poses), and the STFT roundtrip carries that
two-ear render: the prior's centre and the network's conditioning. Timing is unchanged.

Noise. The prior noise of frame ``i`` of a stream is :func:`~.flow.frame_noise` of (seed, i): a
counter-based generator keyed by the frame index, so chunking, batching and NFE changes never
change which noise a frame gets, and all slots' noise is made in one vectorised call. Sampling scales it
by ``sigma * temperature`` (``config.temperature``; training always uses ``sigma``).

Poses. Frame ``i`` uses the speaker/listener poses at its newest sample ``(i + 1) * hop - 1``
(no look-ahead); ``set_speaker_pose(pose, at_sample)`` applies to every frame whose newest
sample is ``>= at_sample``, i.e. from the frame that sample arrives in.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.audio.stft import StftRoundtrip
from livesense.audio.trajectory import PoseControlled, PoseSchedule, Trajectory, as_trajectory
from livesense.errors import ConfigError
from livesense.models.binaural.bank import BufferBanks, PlanBank
from livesense.models.binaural.dsp_prior import DspPrior
from livesense.models.binaural.flow import channels_to_spec, frame_noise, prior, spec_to_channels
from livesense.models.binaural.layers import StreamState
from livesense.models.binaural.nfe import NfePolicy
from livesense.models.binaural.solvers import make_plan, solve
from livesense.models.binaural.unet import BinauralFlowUNet
from livesense.streaming.processor import Chunk, StreamProcessor

__all__ = ["BatchedNeuralRenderer", "RenderStats"]


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


class _FlowFrames(StreamProcessor):
    """The middle of the STFT roundtrip: input spectra (N, C, F, T) -> binaural (N, 2, F, T)."""

    def __init__(self, owner: BatchedNeuralRenderer):
        self.owner = owner

    def step(self, chunk: Chunk) -> torch.Tensor | None:
        return self.owner._render_frames(chunk)

    def reset(self) -> None:  # the owner resets its own state
        pass


# ----------------------------------------------------------------------------- renderers


class BatchedNeuralRenderer(StreamProcessor, PoseControlled):
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
        self._dsp = (
            DspPrior(cfg.sample_rate, self._speaker0, self._listener0)
            if cfg.prior == "dsp"
            else None
        )
        self._seed = [int(seed)] * slots
        self._banks = BufferBanks(self._new_bank)
        self._last_torch = False
        with torch.inference_mode():
            self._scratch = model.init_scratch(slots, max_frames)
        self._nfe = cfg.nfe if nfe is None else nfe
        make_plan(self._nfe, self.solver, cfg.schedule_steps, cfg.t0)  # validates
        for n in {self._nfe, *(policy.levels if policy else ())}:
            self._banks.ensure(n)
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
            self._banks.ensure(nfe)

    def set_speaker_pose(
        self, pose: Pose | Trajectory, at_sample: int | None = None, slot: int = 0
    ) -> None:
        """Move the speaker of ``slot`` to ``pose`` (or onto a trajectory) from the frame in
        which slot-input sample ``at_sample`` arrives (default: the next sample)."""
        self._check_slot(slot)
        self._speaker[slot].set(pose, self._slot_sample(slot, at_sample))
        if self._dsp is not None:
            self._dsp.renderers[slot].set_speaker_pose(pose, at_sample)  # slot-input samples

    def set_listener_pose(
        self, pose: Pose | Trajectory, at_sample: int | None = None, slot: int = 0
    ) -> None:
        """Move/turn the listener of ``slot`` from slot-input sample ``at_sample`` on."""
        self._check_slot(slot)
        self._listener[slot].set(pose, self._slot_sample(slot, at_sample))
        if self._dsp is not None:
            self._dsp.renderers[slot].set_listener_pose(pose, at_sample)  # slot-input samples

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
            self._banks.reset()
        self._frame = 0
        self._n_out = 0
        self._bypass_from: int | None = None
        self._frame0 = [0] * self.slots  # global frame at which each slot's stream starts
        self._prefix = [0] * self.slots  # zeros before the slot's first sample in that frame
        self._start = [0] * self.slots  # global sample of each slot's first input sample
        self._speaker = [PoseSchedule(tr) for tr in self._speaker0]
        self._listener = [PoseSchedule(tr) for tr in self._listener0]
        self.stats = RenderStats()
        self.last_nfe: int | None = None
        if self._dsp is not None:
            for slot in range(self.slots):
                self._dsp.reset_slot(slot, self._speaker0[slot], self._listener0[slot])

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
            self._banks.zero_slot(slot)
        if speaker is not None:
            self._speaker0[slot] = as_trajectory(speaker)
        if listener is not None:
            self._listener0[slot] = as_trajectory(listener)
        if seed is not None:
            self._seed[slot] = int(seed)
        self._frame0[slot], self._prefix[slot], self._start[slot] = g // hop, g % hop, g
        self._speaker[slot] = PoseSchedule(self._speaker0[slot])
        self._listener[slot] = PoseSchedule(self._listener0[slot])
        if self._dsp is not None:
            self._dsp.reset_slot(slot, self._speaker0[slot], self._listener0[slot])

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
        return 1 if self._dsp is None else 2

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
            y = self._roundtrip.step(x if self._dsp is None else self._dsp.render(x))
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

    def _new_bank(self, nfe: int) -> PlanBank:
        cfg = self.config
        plan = make_plan(nfe, self.solver, cfg.schedule_steps, cfg.t0)
        with torch.inference_mode():
            hist = [self.model.init_hist(self.slots) for _ in range(plan.nfe)]
        return PlanBank(plan, hist, frame=-1)

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
        bank, how = self._banks.current(self._nfe, f)
        if how == "warmed":
            self.stats.bank_warms += 1
        elif how == "zeroed":
            self.stats.bank_resets += 1
        states = [StreamState(h, self._scratch) for h in bank.hist]

        def velocity(x: torch.Tensor, t: float, j: int) -> torch.Tensor:
            return model(x, cond, t, state=states[j], pose_emb=pose_emb)

        x = solve(velocity, z, bank.plan)  # (N, 4, F, n)
        bank.frame = f + n
        self._banks.last = bank
        self._frame = f + n
        st = self.stats
        st.frames += n
        st.evaluations += bank.plan.nfe
        st.frames_by_nfe[bank.plan.nfe] = st.frames_by_nfe.get(bank.plan.nfe, 0) + n
        self.last_nfe = bank.plan.nfe
        for s in range(self.slots):
            nxt = (f + n - self._frame0[s] + 1) * cfg.hop - 1
            self._speaker[s].prune(nxt)
            self._listener[s].prune(nxt)
        y = channels_to_spec(x.reshape(n_slots, 2, 2, n_bins, n), cfg.compress, cfg.spec_scale)
        return y  # (N, 2, F, n)

    def _noise(self, frame: int, n: int, n_bins: int) -> torch.Tensor:
        """Prior noise (N, 4, F, n), keyed by (slot seed, slot-local frame index)."""
        local = frame - torch.tensor(self._frame0)[:, None] + torch.arange(n)  # (N, n)
        return frame_noise(torch.tensor(self._seed), local, n_bins)

    def _poses(self, frame: int, n: int) -> torch.Tensor:
        """Speaker + listener poses (N, 14, n) at each frame's newest sample."""
        hop, sr = self.config.hop, self.config.sample_rate
        out = np.empty((self.slots, 14, n))
        for s in range(self.slots):
            local = frame - self._frame0[s] + np.arange(n)
            stamp = np.maximum((local + 1) * hop - 1, 0)  # slot frame-grid samples
            t_samples = np.maximum(stamp - self._prefix[s], 0)  # slot-input samples (time)
            t = t_samples / float(sr)
            sp, li = self._speaker[s].at(stamp, t), self._listener[s].at(stamp, t)
            out[s, :3], out[s, 3:7] = sp.positions.T, sp.orientations.T
            out[s, 7:10], out[s, 10:] = li.positions.T, li.orientations.T
        return torch.from_numpy(out).to(torch.float32)
