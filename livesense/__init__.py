"""livesense: a real-time multimodal streaming pipeline (binaural audio + video reasoning)."""

__version__ = "0.1.0"
