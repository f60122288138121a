"""The NFE policy: fewer network evaluations per frame when a live renderer falls behind."""

from __future__ import annotations

from dataclasses import dataclass

from livesense.errors import ConfigError

__all__ = ["NfePolicy"]


@dataclass
class NfePolicy:
    """Deadline-driven NFE: one level down when a step took more than ``high`` x the audio it
    rendered, one level up after ``patience`` steps below ``low`` x."""

    levels: tuple[int, ...] = (6, 4, 2, 1)
    high: float = 0.8
    low: float = 0.4
    patience: int = 8
    _calm: int = 0

    def __post_init__(self) -> None:
        if not self.levels or any(not isinstance(v, int) or v < 1 for v in self.levels):
            raise ConfigError(f"NfePolicy.levels must be ints >= 1, got {self.levels!r}")
        if not (0 < self.low < self.high):
            raise ConfigError(f"NfePolicy needs 0 < low < high, got {self.low}, {self.high}")
        self.levels = tuple(sorted(set(self.levels), reverse=True))

    def update(self, nfe: int, elapsed_s: float, audio_s: float) -> int:
        """The NFE for the next chunk given the last step's compute time and audio length."""
        if audio_s <= 0:
            return nfe
        load = elapsed_s / audio_s
        if load > self.high:
            self._calm = 0
            lower = [v for v in self.levels if v < nfe]
            return lower[0] if lower else nfe
        if load < self.low:
            self._calm += 1
            if self._calm >= self.patience:
                self._calm = 0
                higher = [v for v in self.levels if v > nfe]
                return higher[-1] if higher else nfe
            return nfe
        self._calm = 0
        return nfe
