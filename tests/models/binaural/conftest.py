"""Binaural model tests: torch on one intra-op thread, a tiny model, a speech-like signal."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
import torch

from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.unet import BinauralFlowUNet

SR = 48000


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """2 shared cores: one intra-op thread avoids spin-wait thrashing."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def model() -> BinauralFlowUNet:
    """The tiny preset, seed 1 (random weights: the tests check streaming, not quality)."""
    return random_model("tiny", seed=1)


def _speech_like(seconds: float, seed: int = 0, noise: float = 0.02) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SR)) / SR
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    return (x + noise * rng.standard_normal(t.shape[0])).astype(np.float32)


@pytest.fixture(scope="session")
def speech_like() -> Callable[..., np.ndarray]:
    """``speech_like(seconds, seed=0, noise=0.02)``: a modulated 220 Hz tone plus noise."""
    return _speech_like
