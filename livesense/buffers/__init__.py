"""Ring buffers: audio sample ring, latest-N frame ring, jitter buffer."""

from livesense.buffers.audio_ring import (
    AudioRing,
    OverflowPolicy,
    RingClosed,
    RingError,
    RingOverflow,
    RingStats,
    RingTimeout,
)
from livesense.buffers.frame_ring import FrameRing, FrameRingStats
from livesense.buffers.jitter import Arrival, JitterBuffer, JitterStats

__all__ = [
    "Arrival",
    "AudioRing",
    "FrameRing",
    "FrameRingStats",
    "JitterBuffer",
    "JitterStats",
    "OverflowPolicy",
    "RingClosed",
    "RingError",
    "RingOverflow",
    "RingStats",
    "RingTimeout",
]
