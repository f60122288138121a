"""The ground floor: typed frames, the stream-processor contract, adapters, the pipeline runner,
the clock and the offline == chunked / causality harness (imports nothing above buffers/)."""

from livesense.streaming.frames import (
    AudioChunk,
    Control,
    ControlKind,
    PoseUpdate,
    Question,
    TextEvent,
    VideoFrame,
)
from livesense.streaming.processor import (
    Chain,
    PoseTarget,
    StreamProcessor,
    concat_chunks,
    to_numpy,
)

__all__ = [
    "AudioChunk",
    "Chain",
    "Control",
    "ControlKind",
    "PoseTarget",
    "PoseUpdate",
    "Question",
    "StreamProcessor",
    "TextEvent",
    "VideoFrame",
    "concat_chunks",
    "to_numpy",
]
