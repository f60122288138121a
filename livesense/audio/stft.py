"""Streaming STFT / ISTFT (periodic Hann, weighted overlap-add) with exact offline equivalence.

The neural binaural renderer runs between a :class:`StreamingSTFT` and a
:class:`StreamingISTFT`; :func:`stft_roundtrip` chains the two into an identity whose output
sample ``k`` reconstructs input sample ``k``.

Framing convention. The signal is implicitly left-padded with ``n_fft - hop`` zeros, so frame
``i`` covers input samples ``[i*hop - (n_fft - hop), i*hop + hop)`` and completes as soon as
``hop`` new samples have arrived. Offline, the frames are exactly::

    torch.stft(F.pad(x, (n_fft - hop, 0)), n_fft, hop, window=torch.hann_window(n_fft),
               center=False, return_complex=True)          # (..., n_bins, frames)

Synthesis is weighted overlap-add (window applied again) divided by the squared-window
envelope, which is the constant :attr:`StftConfig.ola_gain` wherever all ``n_fft / hop``
overlapping frames are present (that is why the squared window must be COLA: the hop must divide
``n_fft`` with ``n_fft / hop >= 3``). The first ``n_fft - hop`` synthesised samples belong to
the padding and are dropped, so ISTFT output sample ``k`` is signal sample ``k``.

Timing, in input samples (``latency`` as in :mod:`livesense.streaming.processor`; output comes
in blocks of ``granularity`` samples; "worst wait" is the delay of a block's first sample):

=====================  ==================  =================  =================  ===========
block                  latency             512/128 @ 48 kHz   worst wait         granularity
=====================  ==================  =================  =================  ===========
``StreamingSTFT``      0                   0                  hop - 1            hop (1 frame)
``StreamingISTFT``     n_fft - hop         384 = 8 ms         n_fft - 1          hop
``stft_roundtrip``     n_fft - hop (sum)   384 = 8 ms         n_fft - 1 (511)    hop
=====================  ==================  =================  =================  ===========

All are computed from the config (:attr:`StftConfig.latency`, :attr:`StftConfig.max_delay`).
A frame is time-stamped by its newest ``hop`` samples: the STFT emits frame ``i`` the moment
input sample ``i*hop + hop - 1`` arrives (no look-ahead). The ISTFT carries the overlap: an
output sample is final only once every frame overlapping it has been added. ``latency`` is
counted to the *last* sample of each ``hop`` block; the block's first sample waits ``hop - 1``
samples more (``n_fft - 1`` in all, the "window length" latency the speech-enhancement
literature quotes). With a non-identity spectral process in between (the renderer), that first
sample also *depends* on input up to ``n_fft - 2`` samples ahead (Hann is 0 at its first tap),
so a per-sample look-ahead check must allow ``latency + granularity - 1`` unless its cut falls
on a hop boundary.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from livesense.streaming.processor import Chain, Chunk, StreamProcessor

__all__ = [
    "PRESETS",
    "IstftState",
    "StftConfig",
    "StftRoundtrip",
    "StftState",
    "StreamingISTFT",
    "StreamingSTFT",
    "hann_window",
    "stft_roundtrip",
]


def hann_window(n_fft: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Periodic Hann window, identical to ``torch.hann_window(n_fft)`` (the default)."""
    return torch.hann_window(n_fft, periodic=True, dtype=dtype, device=device)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _ola_envelope(n_fft: int, hop: int) -> np.ndarray:
    """Steady-state overlap-add envelope of the squared window over one hop, float64 (hop,)."""
    n = np.arange(n_fft)
    wsq = np.sin(np.pi * n / n_fft) ** 4  # periodic Hann, squared
    env = np.zeros(hop)
    for start in range(0, n_fft, hop):
        seg = wsq[start : start + hop]
        env[: seg.shape[0]] += seg
    return env


@dataclass(frozen=True)
class StftConfig:
    """STFT geometry. The default is BinauralFlow's: 48 kHz, 512-point Hann window, hop 128."""

    n_fft: int = 512
    hop: int = 128
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        for name in ("n_fft", "hop", "sample_rate"):
            v = getattr(self, name)
            if not _is_int(v) or v <= 0:
                raise ValueError(f"StftConfig.{name} must be a positive int, got {v!r}")
        if self.hop > self.n_fft:
            raise ValueError(f"StftConfig.hop ({self.hop}) must be <= n_fft ({self.n_fft})")
        env = _ola_envelope(self.n_fft, self.hop)
        ripple = float((env.max() - env.min()) / env.max())
        if ripple > 1e-9:
            ok = [d for d in range(self.n_fft // 3, 0, -1) if self.n_fft % d == 0][:3]
            raise ValueError(
                f"StftConfig(n_fft={self.n_fft}, hop={self.hop}): the squared Hann window is not "
                f"COLA at this hop (overlap-add envelope varies by {ripple:.1%}), so the ISTFT "
                f"could not reconstruct the signal. The hop must divide n_fft with "
                f"n_fft / hop >= 3, e.g. hop in {ok}."
            )

    @property
    def n_bins(self) -> int:
        """One-sided frequency bins, ``n_fft // 2 + 1`` (257 for the default)."""
        return self.n_fft // 2 + 1

    @property
    def overlap(self) -> int:
        """Samples shared by consecutive frames, ``n_fft - hop`` (also the implicit left pad)."""
        return self.n_fft - self.hop

    @property
    def latency(self) -> int:
        """Algorithmic latency of the STFT -> ISTFT roundtrip in samples, ``n_fft - hop``."""
        return self.overlap

    @property
    def max_delay(self) -> int:
        """Worst-case wait of one output sample in a roundtrip, ``latency + hop - 1 = n_fft - 1``.

        Output comes in blocks of ``hop``: the last sample of a block waits :attr:`latency`, the
        first one ``hop - 1`` more. With spectral processing between STFT and ISTFT (the
        renderer), that first sample also *depends* on input that far ahead (up to ``n_fft - 2``
        samples: the Hann window is 0 at its first tap).
        """
        return self.latency + self.hop - 1

    @property
    def latency_s(self) -> float:
        """:attr:`latency` in seconds (0.008 for the default)."""
        return self.latency / self.sample_rate

    @property
    def frame_rate(self) -> float:
        """Frames per second, ``sample_rate / hop`` (375 for the default)."""
        return self.sample_rate / self.hop

    @cached_property
    def ola_gain(self) -> float:
        """Steady-state squared-window overlap-add sum (``3/8 * n_fft / hop`` for Hann)."""
        return float(_ola_envelope(self.n_fft, self.hop).mean())

    def window(self, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
        return hann_window(self.n_fft, dtype=dtype, device=device)

    @classmethod
    def preset(cls, name: str) -> StftConfig:
        """A named configuration from :data:`PRESETS`."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(
                f"unknown STFT preset {name!r}; choose from {sorted(PRESETS)}"
            ) from None


PRESETS: dict[str, StftConfig] = {
    "binauralflow": StftConfig(512, 128, 48000),  # the renderer's analysis (NOTES: BinauralFlow)
    "cues": StftConfig(1024, 256, 48000),  # binaural cue metrics (ILD/IPD)
}


def _as_real(chunk: Chunk) -> torch.Tensor:
    x = torch.as_tensor(chunk)
    if x.dtype in (torch.float32, torch.float64):
        return x
    if x.is_floating_point():
        return x.float()
    raise TypeError(f"StreamingSTFT expects a float signal, got dtype {x.dtype}")


def _as_complex(chunk: Chunk) -> torch.Tensor:
    z = torch.as_tensor(chunk)
    if not z.is_complex():
        raise TypeError(f"StreamingISTFT expects complex spectra, got dtype {z.dtype}")
    return z


@dataclass
class StftState:
    """Preallocated analysis state (buffers are flattened over the batch dims: ``(B, ...)``).

    ``bufs`` are two ping-pong buffers of ``capacity`` samples; ``bufs[cur][:, :n_hist]`` holds
    the history: the last ``n_fft - hop`` samples (initially the implicit zero padding) plus the
    ``n_hist - (n_fft - hop) < hop`` samples of the frame in progress.
    """

    bufs: tuple[torch.Tensor, torch.Tensor]  # 2 x (B, capacity)
    window: torch.Tensor  # (n_fft,)
    batch_shape: tuple[int, ...]
    cur: int = 0
    n_hist: int = 0
    n_in: int = 0  # samples consumed


class StreamingSTFT(StreamProcessor):
    """Streaming STFT: ``(..., samples)`` float chunks -> complex ``(..., n_bins, frames)``.

    Emits every frame completed by the chunk (``None`` if none). Offline (``process``) and any
    chunking give ``torch.stft(F.pad(x, (n_fft - hop, 0)), n_fft, hop, window=hann,
    center=False, return_complex=True)``: samples of an unfinished last frame are dropped at
    ``flush`` like torch does. With ``pad_end=True``, ``flush`` instead appends
    ``(-len(x)) % hop + n_fft - hop`` zeros, so every input sample is covered by all
    ``n_fft / hop`` frames that overlap it (what a perfect-reconstruction roundtrip needs):
    the frames are then those of ``torch.stft(F.pad(x, (n_fft - hop, (-L) % hop + n_fft - hop)),
    ...)``. After ``flush`` the processor is fresh again.

    ``max_chunk``: chunks up to this many samples are framed in the preallocated buffers;
    longer ones (offline use) go through one temporary concatenation.
    """

    def __init__(
        self, cfg: StftConfig | None = None, *, pad_end: bool = False, max_chunk: int = 16384
    ):
        self.cfg = cfg if cfg is not None else StftConfig()
        self.pad_end = pad_end
        if not _is_int(max_chunk) or max_chunk <= 0:
            raise ValueError(f"max_chunk must be a positive int, got {max_chunk!r}")
        self.max_chunk = int(max_chunk)
        self.latency = 0
        self.granularity = self.cfg.hop
        self.state: StftState | None = None

    def reset(self) -> None:
        self.state = None

    def _init_state(self, x: torch.Tensor) -> StftState:
        cfg = self.cfg
        b = math.prod(x.shape[:-1])
        cap = cfg.overlap + cfg.hop - 1 + self.max_chunk
        bufs = (x.new_zeros(b, cap), x.new_zeros(b, cap))
        # The history starts as the implicit left padding: n_fft - hop zeros.
        return StftState(
            bufs, cfg.window(x.dtype, x.device), tuple(x.shape[:-1]), n_hist=cfg.overlap
        )

    def step(self, chunk: Chunk) -> torch.Tensor | None:
        x = _as_real(chunk)
        st = self.state
        if st is None:
            st = self.state = self._init_state(x)
        elif tuple(x.shape[:-1]) != st.batch_shape:
            raise ValueError(
                f"chunk batch shape {tuple(x.shape[:-1])} != stream's {st.batch_shape}"
            )
        return self._step(x.to(st.bufs[0]), st)

    def _step(self, x: torch.Tensor, st: StftState) -> torch.Tensor | None:
        cfg = self.cfg
        c = x.shape[-1]
        xb = x.reshape(st.bufs[0].shape[0], c)  # (B, c)
        total = st.n_hist + c
        n_frames = (total - cfg.overlap) // cfg.hop
        st.n_in += c
        buf, other = st.bufs[st.cur], st.bufs[1 - st.cur]
        if n_frames == 0:  # still inside the current hop: total < n_fft <= capacity
            buf[:, st.n_hist : total] = xb
            st.n_hist = total
            return None
        if total <= buf.shape[-1]:
            buf[:, st.n_hist : total] = xb
            work = buf[:, :total]
        else:  # oversized chunk (offline): one temporary, state keeps its size
            work = torch.cat([buf[:, : st.n_hist], xb], dim=-1)
        frames = work.unfold(-1, cfg.n_fft, cfg.hop)[:, :n_frames]  # (B, F, n_fft) view
        spec = torch.fft.rfft(frames * st.window, dim=-1)  # (B, F, n_bins)
        consumed = n_frames * cfg.hop
        keep = total - consumed  # overlap + samples of the next, unfinished frame
        other[:, :keep] = work[:, consumed:total]  # ping-pong: source and target never overlap
        st.cur, st.n_hist = 1 - st.cur, keep
        return spec.transpose(-1, -2).reshape(*st.batch_shape, cfg.n_bins, n_frames)

    def flush(self) -> torch.Tensor | None:
        st, out = self.state, None
        if st is not None and self.pad_end and st.n_in > 0:
            n_pad = (-st.n_in) % self.cfg.hop + self.cfg.overlap
            out = self._step(st.bufs[0].new_zeros(*st.batch_shape, n_pad), st)
        self.reset()
        return out


@dataclass
class IstftState:
    """Preallocated synthesis state (flattened batch ``B``).

    ``acc`` holds the partial overlap-add sums (weighted by ``window``, which already carries
    the steady-state ``1 / ola_gain``) of the ``n_fft - hop`` samples after the last completed one.
    """

    acc: torch.Tensor  # (B, n_fft - hop)
    window: torch.Tensor  # (n_fft, 1) synthesis window, Hann / ola_gain
    batch_shape: tuple[int, ...]
    n_frames: int = 0
    to_drop: int = 0  # leading padding samples still to discard


class StreamingISTFT(StreamProcessor):
    """Streaming ISTFT: complex ``(..., n_bins, frames)`` -> ``(..., samples)``.

    Weighted overlap-add (``irfft * window``) divided by the squared-window envelope. Each
    frame completes ``hop`` samples, which are emitted at once (they are normalised by the
    constant :attr:`StftConfig.ola_gain`); the first ``n_fft - hop`` synthesised samples are
    the analysis padding and are dropped, so ``T`` frames give ``T * hop`` samples in total,
    the last ``n_fft - hop`` of them at ``flush`` (normalised by the partial envelope of the
    frames present, as ``torch.istft`` does). That envelope falls to ``w[n_fft - 1]^2`` (~1e-9
    for 512), so the flushed tail is only accurate for unprocessed spectra and blows up for
    processed ones: to end a stream cleanly use :class:`StftRoundtrip`, whose padded STFT never
    needs it.

    Offline equivalence: with ``y = torch.istft(S, n_fft, hop, window=hann, center=True,
    length=T*hop + n_fft - hop - n_fft // 2)`` (which is ``center=False``'s synthesis with the
    first ``n_fft // 2`` samples cut; ``center=False`` itself is refused by torch because the
    periodic Hann envelope is exactly 0 at sample 0), the output is ``y[n_fft - hop - n_fft // 2:]``.
    After ``flush`` the processor is fresh again.
    """

    def __init__(self, cfg: StftConfig | None = None):
        self.cfg = cfg if cfg is not None else StftConfig()
        self.latency = self.cfg.overlap
        self.granularity = self.cfg.hop
        self.state: IstftState | None = None

    def reset(self) -> None:
        self.state = None

    def _init_state(self, z: torch.Tensor) -> IstftState:
        cfg = self.cfg
        real = z.real.dtype
        acc = torch.zeros(math.prod(z.shape[:-2]), cfg.overlap, dtype=real, device=z.device)
        window = (cfg.window(torch.float64) / cfg.ola_gain).to(real).to(z.device)[:, None]
        return IstftState(acc, window, tuple(z.shape[:-2]), to_drop=cfg.overlap)

    def step(self, chunk: Chunk) -> torch.Tensor | None:
        z = _as_complex(chunk)
        cfg = self.cfg
        if z.dim() < 2 or z.shape[-2] != cfg.n_bins:
            raise ValueError(
                f"expected spectra (..., {cfg.n_bins}, frames), got shape {tuple(z.shape)}"
            )
        st = self.state
        if st is None:
            st = self.state = self._init_state(z)
        elif tuple(z.shape[:-2]) != st.batch_shape:
            raise ValueError(
                f"chunk batch shape {tuple(z.shape[:-2])} != stream's {st.batch_shape}"
            )
        n = z.shape[-1]
        if n == 0:
            return None
        zb = z.to(torch.complex128 if st.acc.dtype == torch.float64 else torch.complex64)
        zb = zb.reshape(-1, cfg.n_bins, n)  # (B, n_bins, F)
        frames = torch.fft.irfft(zb, n=cfg.n_fft, dim=1) * st.window  # (B, n_fft, F)
        length = (n - 1) * cfg.hop + cfg.n_fft
        ola = F.fold(
            frames, output_size=(1, length), kernel_size=(1, cfg.n_fft), stride=(1, cfg.hop)
        )
        ola = ola.view(-1, length)  # (B, length): overlap-add of the frames
        ola[:, : cfg.overlap] += st.acc
        done = n * cfg.hop
        st.acc.copy_(ola[:, done:])
        st.n_frames += n
        drop = min(st.to_drop, done)
        st.to_drop -= drop
        if drop == done:
            return None
        out = ola[:, drop:done]  # complete: full envelope, already divided by ola_gain
        return out.reshape(*st.batch_shape, done - drop)

    def _tail_envelope(self, n_frames: int) -> np.ndarray:
        """Squared-window sum over the ``n_fft - hop`` samples after the last complete one."""
        cfg = self.cfg
        wsq = np.sin(np.pi * np.arange(cfg.n_fft) / cfg.n_fft) ** 4
        env = np.zeros(cfg.overlap)
        for r in range(1, min(n_frames, cfg.n_fft // cfg.hop - 1) + 1):  # frame T - r
            seg = wsq[r * cfg.hop :]
            env[: seg.shape[0]] += seg[: cfg.overlap]
        return env

    def flush(self) -> torch.Tensor | None:
        st, out = self.state, None
        if st is not None and st.n_frames > 0:
            drop = st.to_drop
            env = self._tail_envelope(st.n_frames)[drop:] / self.cfg.ola_gain
            env = torch.from_numpy(env).to(st.acc)
            if env.shape[0] > 0:
                out = (st.acc[:, drop:] / env).reshape(*st.batch_shape, env.shape[0])
        self.reset()
        return out


class StftRoundtrip(Chain):
    """``StreamingSTFT(pad_end=True) -> *middle -> StreamingISTFT`` with exact output length.

    Without ``middle`` it is the identity: output sample ``k`` == input sample ``k`` (to float32
    rounding). ``middle`` are frame-wise spectral processors (the renderer) that map
    ``(..., n_bins, frames)`` to the same number of frames; their ``latency`` (in samples, a
    multiple of ``hop``) adds to ``n_fft - hop``. ``flush`` ends the stream with exactly as many
    output samples in total as were input, for any chunking: the STFT pads the end so that
    every input sample is covered by all the frames overlapping it, and the surplus is cut.
    """

    def __init__(self, cfg: StftConfig | None = None, middle: Sequence[StreamProcessor] = ()):
        self.cfg = cfg if cfg is not None else StftConfig()
        stft, istft = StreamingSTFT(self.cfg, pad_end=True), StreamingISTFT(self.cfg)
        super().__init__([stft, *middle, istft])
        self.n_in = self.n_out = 0

    def reset(self) -> None:
        super().reset()
        self.n_in = self.n_out = 0

    def step(self, chunk: Chunk) -> torch.Tensor | None:
        self.n_in += chunk.shape[-1]
        y = super().step(chunk)
        if y is not None:
            self.n_out += y.shape[-1]
        return y

    def flush(self) -> torch.Tensor | None:
        y = super().flush()  # >= n_in - n_out samples: pad_end covered every input sample fully
        need = self.n_in - self.n_out
        self.reset()
        if y is None or need == 0:
            return None
        return y[..., :need]


def stft_roundtrip(cfg: StftConfig | None = None) -> StftRoundtrip:
    """A streaming STFT -> ISTFT identity with latency ``n_fft - hop`` (see :class:`StftRoundtrip`)."""
    return StftRoundtrip(cfg)
