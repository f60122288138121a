"""The slot kernel: device-resident state of many BinauralFlow streams and the fixed-shape tick
that renders one block of every active one (the compute of :class:`~.engine.RenderEngine`).

State lives in tensors with ``capacity + 1`` rows on the engine's device: the STFT history
(``n_fft - hop`` samples), the ISTFT overlap-add accumulator, every plan's buffer bank (the
per-conv histories of each solver evaluation) and, for a ``"dsp"`` prior, the vectorised DSP
renderer (:class:`~livesense.audio.dsp_slots.DspSlots`). Row ``capacity`` is the spare row:
padding rows of a batch point at it, so a padded tick computes garbage there and nowhere else.

A tick takes one packed ``(B, width)`` float64 tensor (:class:`RowLayout`: each row's audio
block, its poses, its row index, stream frame, seed and valid length; one host -> device copy)
and returns ``(B, 2, block)`` float32. It gathers the rows' state with ``index_select``, runs
the DSP prior, the STFT, the flow solver and the ISTFT over the batch, and writes the state
back with ``index_copy_``: rows outside the batch are never read or written, so an idle or late
stream keeps its state exactly. The tick makes no host sync and creates every tensor on the
device (a test runs it on the ``meta`` device under a guard that fails on any CPU tensor), so
it can be captured in a CUDA graph.

Precision: the network runs in the engine's dtype (float32, bfloat16 or float16) with its
conditioning MLPs and norm statistics in float32; the solver state, the STFT/ISTFT and the DSP
prior stay float32 (DSP geometry and delay positions float64).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from livesense.audio.dsp_renderer import DspRendererConfig
from livesense.audio.dsp_slots import DspSlots
from livesense.audio.hrtf import HrirSet, load_hrirs
from livesense.errors import ConfigError
from livesense.models.binaural.flow import channels_to_spec, frame_noise, prior, spec_to_channels
from livesense.models.binaural.layers import StreamState
from livesense.models.binaural.solvers import SolverPlan, make_plan, solve
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = ["RowLayout", "SlotKernel"]


class RowLayout:
    """Columns of one packed input row (float64): audio, poses and per-row integers.

    ``audio`` the block's mono samples; ``poses`` speaker + listener (14 numbers) at each
    frame's newest sample, frame-major; ``dsp`` speaker then listener poses (7 + 7) at the
    DSP block boundaries (``dsp_blocks + 1`` of them), boundary-major; then ``row`` (the state
    row), ``frame`` (the stream's frame index of the block's first frame), ``seed`` and
    ``valid`` (input samples of the block that are real; the rest is end-of-stream padding).
    """

    def __init__(self, block: int, frames: int, dsp_blocks: int):
        self.block, self.frames, self.dsp_blocks = block, frames, dsp_blocks
        self.poses = block
        self.dsp = self.poses + 14 * frames
        self.row = self.dsp + 14 * (dsp_blocks + 1)
        self.frame, self.seed, self.valid = self.row + 1, self.row + 2, self.row + 3
        self.width = self.row + 4

    def pack(
        self,
        out: np.ndarray,
        audio: np.ndarray,
        poses: np.ndarray,
        dsp: np.ndarray | None,
        row: int,
        frame: int,
        seed: int,
        valid: int,
    ) -> None:
        """Fill ``out`` (width,) from audio (block,), poses (frames, 14) and dsp (D + 1, 14)."""
        out[: self.block] = audio
        out[self.poses : self.dsp] = poses.reshape(-1)
        if dsp is not None:
            out[self.dsp : self.row] = dsp.reshape(-1)
        out[self.row], out[self.frame], out[self.seed], out[self.valid] = row, frame, seed, valid


class SlotKernel:
    """Streaming state of ``capacity`` streams of ``model`` on its device; :meth:`tick`."""

    def __init__(
        self,
        model: BinauralFlowUNet,
        capacity: int,
        frames: int = 16,
        solver: str | None = None,
        hrirs: HrirSet | None = None,
    ):
        if not isinstance(capacity, int) or capacity < 1:
            raise ConfigError(f"engine capacity must be an int >= 1, got {capacity!r}")
        self.model = model
        self.config = cfg = model.config
        p = model.in_conv.conv.weight  # the trunk (its conditioning may stay float32)
        self.device, self.dtype = p.device, p.dtype
        self.capacity, self.rows, self.spare = capacity, capacity + 1, capacity
        self.frames = frames
        self.block = frames * cfg.hop
        self.solver = solver or cfg.solver
        st = cfg.stft
        self.overlap, self.n_fft, self.hop, self.n_bins = st.overlap, st.n_fft, st.hop, st.n_bins
        dev = self.device
        self.window = st.window(torch.float32, dev)
        self.syn_window = (st.window(torch.float64) / st.ola_gain).to(torch.float32).to(dev)
        self.dsp: DspSlots | None = None
        if cfg.prior == "dsp":
            dcfg = DspRendererConfig(sample_rate=cfg.sample_rate, block=cfg.hop)
            hr = hrirs if hrirs is not None else load_hrirs(None, cfg.sample_rate)
            self.dsp = DspSlots(hr, dcfg, self.rows, self.block // dcfg.block, dev)
        self.has_dsp = self.dsp is not None
        self.in_channels = 1 if self.dsp is None else 2
        self.layout = RowLayout(self.block, frames, self.block // cfg.hop)
        f32 = dict(dtype=torch.float32, device=dev)
        self.stft_hist = torch.zeros(self.rows, self.in_channels, self.overlap, **f32)
        self.istft_acc = torch.zeros(self.rows, 2, self.overlap, **f32)
        self._sample = torch.arange(self.block, device=dev)  # (block,)
        self._frame = torch.arange(frames, device=dev)  # (K,)
        self._plans: dict[int, SolverPlan] = {}
        self._banks: dict[int, list[list[torch.Tensor]]] = {}
        self._scratch: dict[int, list[torch.Tensor]] = {}

    # ------------------------------------------------------------------ state

    def plan(self, nfe: int) -> SolverPlan:
        if nfe not in self._plans:
            cfg = self.config
            self._plans[nfe] = make_plan(nfe, self.solver, cfg.schedule_steps, cfg.t0)
        return self._plans[nfe]

    def bank(self, nfe: int) -> list[list[torch.Tensor]]:
        """The buffer bank of ``nfe`` (built zeroed on first use): [evaluation][conv]."""
        if nfe not in self._banks:
            with torch.inference_mode():
                n = self.plan(nfe).nfe
                self._banks[nfe] = [self.model.init_hist(self.rows) for _ in range(n)]
        return self._banks[nfe]

    def scratch(self, batch: int) -> list[torch.Tensor]:
        """Conv work space for a batch of ``batch`` rows (one per batch size, reused)."""
        if batch not in self._scratch:
            with torch.inference_mode():
                self._scratch[batch] = self.model.init_scratch(batch, self.frames)
        return self._scratch[batch]

    def warm(self, nfe: int, src: int) -> None:
        """Switch plans: each evaluation of ``nfe``'s bank copies the history of ``src``'s
        evaluation nearest in flow time, every row at once (all streams switch together)."""
        if nfe == src:
            return
        dst_bank, src_bank = self.bank(nfe), self.bank(src)
        src_t = np.array(self.plan(src).eval_times)
        with torch.inference_mode():
            for j, t in enumerate(self.plan(nfe).eval_times):
                jj = int(np.argmin(np.abs(src_t - t)))
                for h, h_src in zip(dst_bank[j], src_bank[jj], strict=True):
                    h.copy_(h_src)

    def reset_rows(self, rows: torch.Tensor) -> None:
        """Fresh streams in ``rows`` (int64 on the device): every piece of their state zeroed."""
        with torch.inference_mode():
            self.stft_hist.index_fill_(0, rows, 0.0)
            self.istft_acc.index_fill_(0, rows, 0.0)
            for bank in self._banks.values():
                for hs in bank:
                    for h in hs:
                        h.index_fill_(0, rows, 0.0)
            if self.dsp is not None:
                self.dsp.reset_rows(rows)

    def reset_host(self, rows: list[int]) -> None:
        """:meth:`reset_rows` of host row numbers."""
        self.reset_rows(torch.tensor(rows, device=self.device))

    def close(self) -> None:
        pass

    # ------------------------------------------------------------------ the tick

    def tick_host(self, nfe: int, host: np.ndarray) -> np.ndarray:
        """:meth:`tick` of a host array: ``(B, width)`` float64 -> ``(B, 2, block)`` float32
        (the CPU path; one copy each way on another device)."""
        return self.tick(nfe, torch.from_numpy(host).to(self.device)).cpu().numpy()

    def tick(self, nfe: int, packed: torch.Tensor) -> torch.Tensor:
        """Render one block of each packed row: ``(B, width)`` float64 -> ``(B, 2, block)``."""
        with torch.inference_mode():
            return self._tick(nfe, packed)

    def _tick(self, nfe: int, packed: torch.Tensor) -> torch.Tensor:
        lay, cfg, k = self.layout, self.config, self.frames
        b = packed.shape[0]
        rows = packed[:, lay.row].to(torch.int64)  # (B,)
        x = packed[:, : lay.block].to(torch.float32)  # (B, block)
        poses = packed[:, lay.poses : lay.dsp].to(torch.float32)
        poses = poses.reshape(b, k, 14).transpose(1, 2)  # (B, 14, K)
        valid = packed[:, lay.valid].to(torch.int64)
        if self.dsp is not None:
            dsp = packed[:, lay.dsp : lay.row].reshape(b, lay.dsp_blocks + 1, 14)
            dsp = dsp.transpose(1, 2)  # (B, 14, D + 1) float64
            d = self.dsp.render(rows, x, dsp[:, :7].contiguous(), dsp[:, 7:].contiguous())
        else:
            d = x[:, None, :]  # (B, 1, block)
        d = d * (self._sample < valid[:, None]).to(d.dtype)[:, None, :]  # end-of-stream zeros

        # Streaming STFT over [history, block]: K frames.
        buf = torch.cat([self.stft_hist.index_select(0, rows), d], dim=-1)  # (B, C, ov + block)
        self.stft_hist.index_copy_(0, rows, buf[..., buf.shape[-1] - self.overlap :])
        frames = buf.unfold(-1, self.n_fft, self.hop)  # (B, C, K, n_fft)
        spec = torch.fft.rfft(frames * self.window, dim=-1).transpose(-1, -2)  # (B, C, F, K)

        # Flow: prior around the conditioning, solved through the rows' buffer banks.
        cond = spec_to_channels(spec, cfg.compress, cfg.spec_scale)  # (B, C, 2, F, K)
        cond = cond.reshape(b, 2 * self.in_channels, self.n_bins, k)
        local = packed[:, lay.frame].to(torch.int64)[:, None] + self._frame  # (B, K)
        noise = frame_noise(packed[:, lay.seed].to(torch.int64), local, self.n_bins)
        z = prior(cond, noise, cfg.sigma * cfg.temperature)  # (B, 4, F, K) float32
        y = self._solve(nfe, rows, z, cond, poses)
        out = channels_to_spec(y.reshape(b, 2, 2, self.n_bins, k), cfg.compress, cfg.spec_scale)

        # Streaming ISTFT: weighted overlap-add continued from the rows' accumulators.
        fr = torch.fft.irfft(out.reshape(2 * b, self.n_bins, k), n=self.n_fft, dim=1)
        fr = fr * self.syn_window[:, None]  # (2B, n_fft, K)
        length = self.block + self.overlap
        ola = F.fold(fr, (1, length), (1, self.n_fft), stride=(1, self.hop)).view(b, 2, length)
        head = ola[..., : self.overlap] + self.istft_acc.index_select(0, rows)
        self.istft_acc.index_copy_(0, rows, ola[..., self.block :])
        return torch.cat([head, ola[..., self.overlap : self.block]], dim=-1)  # (B, 2, block)

    def _solve(
        self, nfe: int, rows: torch.Tensor, z: torch.Tensor, cond: torch.Tensor, poses: torch.Tensor
    ) -> torch.Tensor:
        model, dt, bank = self.model, self.dtype, self.bank(nfe)
        hist = [[h.index_select(0, rows) for h in hs] for hs in bank]  # the batch's histories
        scratch = self.scratch(z.shape[0])
        states = [StreamState(hs, scratch) for hs in hist]
        cond_m = cond.to(dt)
        pose_emb = model.cond.embed_poses(poses)  # (B, K, E) float32 conditioning

        def velocity(x: torch.Tensor, t: float, j: int) -> torch.Tensor:
            v = model(x.to(dt), cond_m, t, state=states[j], pose_emb=pose_emb)
            return v.to(torch.float32)

        x = solve(velocity, z, self.plan(nfe))  # float32 accumulation
        for hs, hbs in zip(bank, hist, strict=True):
            for h, hb in zip(hs, hbs, strict=True):
                h.index_copy_(0, rows, hb)
        return x
