"""The buffer bank: each solver evaluation's per-layer past activations, one bank per NFE.

Each network evaluation of the solver (one flow time ``t``, one solver stage) streams through
its own :class:`~livesense.models.binaural.layers.StreamState`: the last ``k_t - 1`` input
frames of every causal conv, preallocated ``(slots, C, F, k_t - 1)`` tensors. A
:class:`PlanBank` holds them for one :class:`SolverPlan` and records the frame it is current
for. :class:`BufferBanks` keeps one per NFE and, when the NFE changes, *warms* the new plan's
bank from the previous one (each evaluation copies the history of the evaluation with the
nearest flow time: same layers, same shapes) or zeroes it when nothing is current.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from livesense.models.binaural.solvers import SolverPlan

__all__ = ["BufferBanks", "PlanBank"]


@dataclass
class PlanBank:
    """Buffer bank of one solver plan: ``hist[j]`` is evaluation ``j``'s per-conv history."""

    plan: SolverPlan
    hist: list[list[torch.Tensor]]  # [evaluation][conv] (slots, C, F, k_t - 1)
    frame: int  # the next frame index this bank is current for (-1: stale)

    def zero(self) -> None:
        for hs in self.hist:
            for h in hs:
                h.zero_()

    def zero_slot(self, slot: int) -> None:
        for hs in self.hist:
            for h in hs:
                h[slot].zero_()

    def warm_from(self, src: PlanBank) -> None:
        """Copy each evaluation's history from ``src``'s evaluation nearest in flow time."""
        src_t = np.array(src.plan.eval_times)
        for j, t in enumerate(self.plan.eval_times):
            jj = int(np.argmin(np.abs(src_t - t)))
            for h, h_src in zip(self.hist[j], src.hist[jj], strict=True):
                h.copy_(h_src)


class BufferBanks:
    """One :class:`PlanBank` per NFE, built on first use by ``make(nfe)``."""

    def __init__(self, make: Callable[[int], PlanBank]):
        self._make = make
        self._banks: dict[int, PlanBank] = {}
        self.last: PlanBank | None = None  # the bank that rendered the latest frames

    def ensure(self, nfe: int) -> PlanBank:
        if nfe not in self._banks:
            self._banks[nfe] = self._make(nfe)
        return self._banks[nfe]

    def reset(self) -> None:
        """Fresh streams: every bank zeroed and current for frame 0."""
        for bank in self._banks.values():
            bank.zero()
            bank.frame = 0
        self.last = None

    def zero_slot(self, slot: int) -> None:
        for bank in self._banks.values():
            bank.zero_slot(slot)

    def current(self, nfe: int, frame: int) -> tuple[PlanBank, str]:
        """The bank of ``nfe`` made current for ``frame``, and how: ``"current"``,
        ``"warmed"`` (from the last bank's history) or ``"zeroed"`` (nothing to warm from)."""
        bank = self.ensure(nfe)
        if bank.frame == frame:
            return bank, "current"
        src = self.last
        how = "zeroed"
        if src is not None and src is not bank and src.frame == frame:
            bank.warm_from(src)
            how = "warmed"
        else:
            bank.zero()
        bank.frame = frame
        return bank, how
