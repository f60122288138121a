"""Vision-language model backends for the video reasoner (Qwen3-VL, SmolVLM2, tiny random).

- :mod:`.base` — :class:`VlmBackend`, the streaming operations the reasoner needs
- :mod:`.loading` — :func:`load_vlm` (model id, local folder or ``tiny``)
- :mod:`.preprocess` — resizing frames to a patch grid
- :mod:`.qwen3vl`, :mod:`.smolvlm` — the architectures; :mod:`.tiny` — tiny random models
- :mod:`.cache` — :class:`IncrementalCache` with explicit positions and masks
"""

from livesense.models.vlm.base import FrameFeatures, TokenChunk, VlmBackend
from livesense.models.vlm.cache import IncrementalCache, Kind, additive_mask
from livesense.models.vlm.loading import load_vlm, load_vlm_from

__all__ = [
    "FrameFeatures",
    "IncrementalCache",
    "Kind",
    "TokenChunk",
    "VlmBackend",
    "additive_mask",
    "load_vlm",
    "load_vlm_from",
]
