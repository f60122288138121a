"""Image preprocessing for the VLM backends: resizing to a patch grid (PIL; no torchvision)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

__all__ = ["fit_to_factor", "resize_rgb"]


def fit_to_factor(height: int, width: int, factor: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) multiples of ``factor``, aspect kept, area at most ``max_pixels`` (>= one cell)."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    return h, w


def resize_rgb(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """uint8 (H, W, 3) -> uint8 (height, width, 3), bicubic (no-op when the size matches)."""
    if image.shape[0] == height and image.shape[1] == width:
        return image
    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    return np.asarray(im.resize((width, height), Image.Resampling.BICUBIC))
