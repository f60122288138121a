"""Typed frames that travel through the pipeline, each with a presentation timestamp.

Audio pts are in samples at the session rate; video pts are in seconds (float, exact enough
for any frame rate within a session's length). Control frames (reset, pose update, question,
stop) bypass data queues.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class AudioChunk:
    """``data``: float32 (channels, samples); ``pts``: first sample's index in the stream."""

    data: np.ndarray
    pts: int
    sample_rate: int

    def __post_init__(self) -> None:
        if self.data.ndim != 2:
            raise ValueError(f"audio data must be (channels, samples), got shape {self.data.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def channels(self) -> int:
        return int(self.data.shape[0])

    @property
    def samples(self) -> int:
        return int(self.data.shape[1])

    @property
    def end(self) -> int:
        """pts one past the last sample."""
        return self.pts + self.samples

    @property
    def time(self) -> float:
        """Start time in seconds."""
        return self.pts / self.sample_rate


@dataclass(frozen=True)
class VideoFrame:
    """``image``: uint8 RGB (height, width, 3); ``pts``: seconds from stream start."""

    image: np.ndarray
    pts: float
    index: int = 0

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3:
            raise ValueError(f"video image must be (H, W, 3), got shape {self.image.shape}")

    @property
    def time(self) -> float:
        return self.pts


@dataclass(frozen=True)
class PoseUpdate:
    """New speaker and/or listener pose, effective from audio sample ``pts``.

    Each pose is (x, y, z, qx, qy, qz, qw): x forward, y right, z up (Richard et al.).
    """

    pts: int
    speaker: tuple[float, ...] | None = None
    listener: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name in ("speaker", "listener"):
            pose = getattr(self, name)
            if pose is not None and len(pose) != 7:
                raise ValueError(
                    f"{name} pose needs 7 numbers (x y z qx qy qz qw), got {len(pose)}"
                )


@dataclass(frozen=True)
class Question:
    """A question asked at stream time ``pts`` (seconds)."""

    text: str
    pts: float
    id: str = ""
    options: tuple[str, ...] = ()
    answer: str | None = None


@dataclass(frozen=True)
class TextEvent:
    """A note or answer about video ``t0``..``t1`` (stream seconds)."""

    type: str  # "note" | "answer"
    text: str
    t0: float
    t1: float
    id: str | None = None
    question: str | None = None

    def to_json(self) -> dict:
        d = {"type": self.type, "text": self.text, "t0": self.t0, "t1": self.t1}
        if self.id is not None:
            d["id"] = self.id
        if self.question is not None:
            d["question"] = self.question
        return d


class ControlKind(enum.Enum):
    RESET = "reset"
    STOP = "stop"
    FLUSH = "flush"


@dataclass(frozen=True)
class Control:
    """Out-of-band control; handled ahead of queued data."""

    kind: ControlKind
    info: dict = field(default_factory=dict)


Frame = AudioChunk | VideoFrame | PoseUpdate | Question | TextEvent | Control
