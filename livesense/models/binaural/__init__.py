"""BinauralFlow: a causal U-Net trained with conditional flow matching that renders binaural
speech from mono audio and speaker/listener poses, streamed chunk by chunk.

- :mod:`.config` — :class:`BinauralFlowConfig` and the ``paper`` / ``small`` / ``tiny`` presets
- :mod:`.layers`, :mod:`.unet` — causal blocks with streaming state, the U-Net
- :mod:`.flow` — representation, prior, flow matching loss, :func:`train_step`
- :mod:`.solvers` — Euler / midpoint with early-skip schedules
- :mod:`.batched`, :mod:`.renderer` — :class:`BatchedNeuralRenderer` (slots),
  :class:`NeuralBinauralRenderer` (one stream); :mod:`.bank` — the buffer bank per NFE;
  :mod:`.dsp_prior` — the DSP prior's per-slot renderers
- :mod:`.engine`, :mod:`.slots`, :mod:`.stream` — :class:`RenderEngine` (one model, a table of
  stream slots, one batched tick for all of them, on any device), its kernel and
  :class:`SlotStream` (one slot's stream: what live sessions, ``mic`` and ``replay`` render with)
- :mod:`.nfe` — :class:`NfePolicy`; :mod:`.fallback` — :class:`FallbackRenderer` (DSP crossfade)
- :mod:`.checkpoint` — safetensors + config.json, the bundled model, random models
- :mod:`.training`, :mod:`.evaluation` — flow matching training, evaluation against DSP
"""

from livesense.models.binaural.batched import BatchedNeuralRenderer, RenderStats
from livesense.models.binaural.checkpoint import (
    bundled_checkpoint,
    load_checkpoint,
    load_model,
    random_model,
    save_checkpoint,
)
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.engine import EngineFull, EngineStats, RenderEngine
from livesense.models.binaural.fallback import FallbackRenderer
from livesense.models.binaural.flow import FlowBatch, flow_matching_loss, train_step
from livesense.models.binaural.nfe import NfePolicy
from livesense.models.binaural.renderer import LIVE_BLOCK_FRAMES, NeuralBinauralRenderer, live_block
from livesense.models.binaural.solvers import SolverPlan, make_plan, solve, time_schedule
from livesense.models.binaural.stream import SlotStream
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = [
    "LIVE_BLOCK_FRAMES",
    "BatchedNeuralRenderer",
    "BinauralFlowConfig",
    "BinauralFlowUNet",
    "EngineFull",
    "EngineStats",
    "FallbackRenderer",
    "FlowBatch",
    "NeuralBinauralRenderer",
    "NfePolicy",
    "RenderEngine",
    "RenderStats",
    "SlotStream",
    "SolverPlan",
    "bundled_checkpoint",
    "flow_matching_loss",
    "live_block",
    "load_checkpoint",
    "load_model",
    "make_plan",
    "random_model",
    "save_checkpoint",
    "solve",
    "time_schedule",
    "train_step",
]
