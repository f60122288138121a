"""Frame sampling to a target fps from any input rate.

:class:`FrameSampler` keeps at most one frame per ``1/fps`` slot of stream time (by pts), so a
30 fps webcam, a 24 fps file and a jittery network stream all come out at the same rate; frames
are dropped, never duplicated.
"""

from __future__ import annotations

import math

__all__ = ["FrameSampler"]


class FrameSampler:
    """Accepts the first frame of each ``1/fps`` slot; ``fps=None`` accepts every frame."""

    def __init__(self, fps: float | None) -> None:
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self._last_slot: int | None = None
        self.accepted = 0
        self.rejected = 0

    def accept(self, pts: float) -> bool:
        """Whether the frame at ``pts`` (seconds) is kept."""
        if self.fps is None:
            self.accepted += 1
            return True
        slot = math.floor(pts * self.fps + 1e-6)
        if self._last_slot is not None and slot <= self._last_slot:
            self.rejected += 1
            return False
        self._last_slot = slot
        self.accepted += 1
        return True

    def reset(self) -> None:
        self._last_slot = None
        self.accepted = self.rejected = 0
