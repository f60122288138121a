"""Typed frames, the stream-processor contract, pipeline running, clocks, sources and sinks."""

from livesense.streaming.frames import (
    AudioChunk,
    Control,
    ControlKind,
    PoseUpdate,
    Question,
    TextEvent,
    VideoFrame,
)
from livesense.streaming.processor import Chain, StreamProcessor, concat_chunks

__all__ = [
    "AudioChunk",
    "Chain",
    "Control",
    "ControlKind",
    "PoseUpdate",
    "Question",
    "StreamProcessor",
    "TextEvent",
    "VideoFrame",
    "concat_chunks",
]
