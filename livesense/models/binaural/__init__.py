"""BinauralFlow: a causal U-Net trained with conditional flow matching that renders binaural
speech from mono audio and speaker/listener poses, streamed chunk by chunk.

- :mod:`.config` — :class:`BinauralFlowConfig` and the ``paper`` / ``small`` / ``tiny`` presets
- :mod:`.layers`, :mod:`.unet` — causal blocks with streaming state, the U-Net
- :mod:`.flow` — representation, prior, flow matching loss, :func:`train_step`
- :mod:`.solvers` — Euler / midpoint with early-skip schedules
- :mod:`.renderer` — :class:`NeuralBinauralRenderer`, :class:`BatchedNeuralRenderer`,
  :class:`FallbackRenderer` (DSP crossfade), :class:`NfePolicy`
- :mod:`.checkpoint` — safetensors + config.json
"""

from livesense.models.binaural.checkpoint import (
    bundled_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import FlowBatch, flow_matching_loss, train_step
from livesense.models.binaural.renderer import (
    BatchedNeuralRenderer,
    FallbackRenderer,
    NeuralBinauralRenderer,
    NfePolicy,
    RenderStats,
    random_model,
)
from livesense.models.binaural.solvers import SolverPlan, make_plan, solve, time_schedule
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = [
    "BatchedNeuralRenderer",
    "BinauralFlowConfig",
    "BinauralFlowUNet",
    "FallbackRenderer",
    "FlowBatch",
    "NeuralBinauralRenderer",
    "NfePolicy",
    "RenderStats",
    "SolverPlan",
    "bundled_checkpoint",
    "flow_matching_loss",
    "load_checkpoint",
    "make_plan",
    "random_model",
    "save_checkpoint",
    "solve",
    "time_schedule",
    "train_step",
]
