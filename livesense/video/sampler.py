"""Frame sampling to a target fps from any input rate, and RGB resizing for patch grids.

:class:`FrameSampler` keeps at most one frame per ``1/fps`` slot of stream time (by pts), so a
30 fps webcam, a 24 fps file and a jittery network stream all come out at the same rate; frames
are dropped, never duplicated. Backends resize frames to their patch grid with
:func:`resize_rgb` (PIL; torchvision is not needed).
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["FrameSampler", "resize_rgb"]


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


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (height, width, 3), bicubic (no-op when the size matches)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(im.resize((width, height), Image.Resampling.BICUBIC))
