"""BinauralFlow configuration: one frozen dataclass, presets by name.

Timing (computed from the config, see :attr:`BinauralFlowConfig.latency`): the U-Net keeps the
STFT frame rate in every layer (it downsamples frequency only) and its time convolutions only
look at past frames, so the network adds **no latency** and works frame by frame. The renderer
therefore inherits the STFT roundtrip's timing: ``latency = n_fft - hop`` samples at the end of
an emission block and ``granularity = hop`` samples (384 + 128 at 512/128, i.e. 8 ms latency,
10.6 ms worst-case wait at 48 kHz). Chunks of any size are fine; the live chunk is a cost
trade-off (Python overhead per network call), not an algorithmic constraint.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from livesense.audio.stft import StftConfig
from livesense.errors import ConfigError

__all__ = ["POSE_DIM", "PRESETS", "BinauralFlowConfig"]

POSE_DIM = 14  # speaker (x, y, z, qx, qy, qz, qw) + listener (same), per frame
SOLVERS = ("euler", "midpoint")
PRIORS = ("mono", "dsp")


@dataclass(frozen=True)
class BinauralFlowConfig:
    """Architecture, representation and sampling settings of a BinauralFlow model.

    Presets (:meth:`preset`):

    - ``paper``: as published (Liang et al., ICML 2025): 48 kHz, 512-point Hann window, hop 128
      (257 bins), complex spectrogram as real/imag channels, 4 down/up stages, base width 96
      with multipliers (1, 2, 4, 6, 6) and 2 residual blocks per level: **83.6M parameters**
      (paper: ~79M; measured by ``tests/models/binaural/test_unet.py``). Midpoint solver,
      12-step schedule with early skip at t0 = 0.5 -> 6 evaluations.
    - ``small``: the CPU real-time preset livesense ships. Same sample rate, hop, window type,
      representation, prior, conditioning and U-Net topology (4 frequency down/up stages), but
      ``n_fft = 384`` (193 bins: 25% fewer positions per frame, 5.3 ms latency instead of 8),
      base width 8 with multipliers (1, 1, 2, 2, 4), one residual block per level, 4 norm
      groups and a 64-wide conditioning embedding (0.13M parameters). Why: the paper-sized
      model costs ~2.4 TFLOP per evaluation per second of audio (frequency-only downsampling
      keeps all 375 frames/s in every layer), the small one 2.4 GFLOP, which 2 CPU cores
      manage: 2 evaluations (midpoint, one interval from t0 = 0.5) per 42.7 ms chunk at
      RTF ~0.45 on an otherwise idle 2-core CPU (``benchmarks/neural_renderer.py``; the figure
      degrades under load from other processes). Its quality is correspondingly lower.
    - ``tiny``: a two-stage debug model for tests (a few thousand parameters).

    Spectral representation: the complex STFT ``S`` is stored as ``scale * |S|**compress *
    exp(i angle S)`` split into real/imag channels (``compress = 1``: plain complex, the paper's
    choice; ``< 1`` compresses the magnitude, as common in speech enhancement).
    """

    name: str = "custom"
    sample_rate: int = 48000
    n_fft: int = 512
    hop: int = 128
    # U-Net
    channels: int = 96  # base width C0
    channel_mults: tuple[int, ...] = (1, 2, 4, 6, 6)  # one per level: len - 1 down/up stages
    num_res_blocks: int = 2
    norm_groups: int = 32
    kernel_time: int = 3  # past frames seen by each time convolution, incl. the current one
    # conditioning (Gaussian Fourier embedding + MLP)
    emb_dim: int = 512
    fourier_dim: int = 64  # random frequencies per embedding (sin + cos -> 2x features)
    fourier_scale_t: float = 16.0
    fourier_scale_pose: float = 1.0
    # representation + flow
    compress: float = 1.0
    spec_scale: float = 1.0
    sigma: float = 0.5  # prior z = centre + sigma * noise
    prior: str = "mono"  # prior centre: "mono" (the paper) or "dsp" (the DSP renderer's output)
    temperature: float = 1.0  # sampling noise = temperature * sigma (training always uses sigma)
    # sampling defaults
    solver: str = "midpoint"
    schedule_steps: int = 12
    t0: float = 0.5  # early skip: start the schedule here
    nfe: int = 6

    def __post_init__(self) -> None:
        if isinstance(self.channel_mults, list):
            object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        ints = (
            "sample_rate",
            "n_fft",
            "hop",
            "channels",
            "num_res_blocks",
            "norm_groups",
            "kernel_time",
            "emb_dim",
            "fourier_dim",
            "schedule_steps",
            "nfe",
        )
        for name in ints:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"BinauralFlowConfig.{name} must be a positive int, got {v!r}")
        try:
            StftConfig(self.n_fft, self.hop, self.sample_rate)
        except ValueError as e:
            raise ConfigError(f"BinauralFlowConfig: {e}") from None
        mults = self.channel_mults
        if not mults or not all(isinstance(m, int) and m > 0 for m in mults):
            raise ConfigError(
                f"BinauralFlowConfig.channel_mults must be positive ints, got {mults!r}"
            )
        for w in self.widths:
            if w % self.norm_groups:
                raise ConfigError(
                    f"BinauralFlowConfig.norm_groups ({self.norm_groups}) must divide every "
                    f"channel width, got widths {self.widths}"
                )
        if self.freq_sizes[-1] < 2:
            raise ConfigError(
                f"BinauralFlowConfig: {len(mults) - 1} frequency downsamplings of "
                f"{self.n_bins} bins leave {self.freq_sizes[-1]}; use fewer stages"
            )
        for name in ("fourier_scale_t", "fourier_scale_pose", "compress", "spec_scale"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v > 0):
                raise ConfigError(f"BinauralFlowConfig.{name} must be a positive number, got {v!r}")
        if self.compress > 1:
            raise ConfigError(f"BinauralFlowConfig.compress must be in (0, 1], got {self.compress}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ConfigError(f"BinauralFlowConfig.sigma must be >= 0, got {self.sigma}")
        if self.prior not in PRIORS:
            raise ConfigError(
                f"BinauralFlowConfig.prior must be one of {PRIORS}, got {self.prior!r}"
            )
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ConfigError(
                f"BinauralFlowConfig.temperature must be >= 0, got {self.temperature}"
            )
        if self.solver not in SOLVERS:
            raise ConfigError(
                f"BinauralFlowConfig.solver must be one of {SOLVERS}, got {self.solver!r}"
            )
        if not (0.0 <= self.t0 < 1.0):
            raise ConfigError(f"BinauralFlowConfig.t0 must be in [0, 1), got {self.t0}")

    # ------------------------------------------------------------------ derived sizes

    @property
    def cond_channels(self) -> int:
        """Conditioning channels: the mono spectrum (2: re, im) or the DSP render's (4)."""
        return 4 if self.prior == "dsp" else 2

    @property
    def stft(self) -> StftConfig:
        return StftConfig(self.n_fft, self.hop, self.sample_rate)

    @property
    def n_bins(self) -> int:
        return self.n_fft // 2 + 1

    @property
    def n_down(self) -> int:
        """Down/upsampling stages (frequency only)."""
        return len(self.channel_mults) - 1

    @property
    def widths(self) -> tuple[int, ...]:
        """Channel width per level."""
        return tuple(self.channels * m for m in self.channel_mults)

    @property
    def freq_sizes(self) -> tuple[int, ...]:
        """Frequency bins per level (stride-2, kernel-3, pad-1 convolutions: 257 -> 129 -> ...)."""
        sizes = [self.n_bins]
        for _ in range(self.n_down):
            sizes.append((sizes[-1] - 1) // 2 + 1)
        return tuple(sizes)

    # ------------------------------------------------------------------ timing

    @property
    def latency(self) -> int:
        """Algorithmic latency of the renderer in samples (block end): ``n_fft - hop``.

        The network is causal frame by frame (no time downsampling), so it adds nothing to the
        STFT roundtrip's latency."""
        return self.n_fft - self.hop

    @property
    def granularity(self) -> int:
        """Output block in samples: one STFT hop."""
        return self.hop

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.sample_rate

    @property
    def max_delay_ms(self) -> float:
        """Worst-case wait of an output sample: ``latency + granularity - 1`` samples."""
        return 1000.0 * (self.latency + self.granularity - 1) / self.sample_rate

    # ------------------------------------------------------------------ construction

    def replace(self, **changes: Any) -> BinauralFlowConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channel_mults"] = list(self.channel_mults)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BinauralFlowConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise :class:`ConfigError`."""
        if not isinstance(d, dict):
            raise ConfigError(f"BinauralFlow config must be a JSON object, got {type(d).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown BinauralFlow config keys: {', '.join(unknown)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str) -> BinauralFlowConfig:
        """A named configuration: ``paper``, ``small`` or ``tiny`` (see the class docstring)."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ConfigError(
                f"unknown BinauralFlow preset {name!r}; choose from {', '.join(sorted(PRESETS))}"
            ) from None


PRESETS: dict[str, BinauralFlowConfig] = {
    "paper": BinauralFlowConfig(name="paper"),
    "small": BinauralFlowConfig(
        name="small",
        n_fft=384,
        channels=8,
        channel_mults=(1, 1, 2, 2, 4),
        num_res_blocks=1,
        norm_groups=4,
        emb_dim=64,
        fourier_dim=16,
        sigma=0.05,
        prior="dsp",
        t0=0.0,
        nfe=2,
    ),
    "tiny": BinauralFlowConfig(
        name="tiny",
        channels=4,
        channel_mults=(1, 2, 2),
        num_res_blocks=1,
        norm_groups=2,
        emb_dim=16,
        fourier_dim=4,
        nfe=2,
    ),
}
