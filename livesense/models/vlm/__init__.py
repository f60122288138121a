"""Vision-language model backends for the video reasoner (Qwen3-VL, SmolVLM2, tiny random)."""

from livesense.models.vlm.base import Chunk, FrameFeatures, VlmBackend, load_vlm, load_vlm_from
from livesense.models.vlm.cache import IncrementalCache, Kind, additive_mask

__all__ = [
    "Chunk",
    "FrameFeatures",
    "IncrementalCache",
    "Kind",
    "VlmBackend",
    "additive_mask",
    "load_vlm",
    "load_vlm_from",
]
