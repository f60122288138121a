"""ODE solvers for flow matching sampling: Euler, midpoint, and schedules with early skip.

A :class:`SolverPlan` lists the intervals ``[t_k, t_{k+1}]`` integrated from ``t0`` to 1 and
the solver of each; its :attr:`SolverPlan.eval_times` are the flow times at which the network
is evaluated, in order (one per evaluation, NFE of them). The streaming renderer keeps one
buffer bank entry per evaluation (see :mod:`livesense.models.binaural.renderer`).

Early skip (BinauralFlow): the prior is centred on the mono spectrogram, so integration can
start part-way, at ``t0`` (0.5 = half of a 12-step schedule): the midpoint solver over the 3
remaining intervals of width 2/12 costs 6 evaluations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from livesense.errors import ConfigError

__all__ = ["SolverPlan", "Velocity", "make_plan", "solve", "time_schedule"]

# velocity(x, t, j): the network at flow time t for the plan's j-th evaluation
Velocity = Callable[[torch.Tensor, float, int], torch.Tensor]


def time_schedule(steps: int = 12, t0: float = 0.5, intervals: int | None = None) -> list[float]:
    """Interval boundaries from ``t0`` to 1.

    The base schedule is the uniform ``steps``-step grid on [0, 1] with the points below ``t0``
    skipped (``t0`` itself is prepended if it is not on the grid). ``intervals`` coarsens it:
    every k-th grid point when the remaining grid intervals are a multiple of it, else a
    uniform split of ``[t0, 1]``.
    """
    if steps <= 0 or not (0.0 <= t0 < 1.0):
        raise ConfigError(f"schedule needs steps > 0 and 0 <= t0 < 1, got {steps}, {t0}")
    grid = [k / steps for k in range(steps + 1) if k / steps >= t0 - 1e-12]
    if abs(grid[0] - t0) > 1e-12:
        grid.insert(0, t0)
    if intervals is None:
        return grid
    if intervals <= 0:
        raise ConfigError(f"intervals must be positive, got {intervals}")
    n = len(grid) - 1
    if n % intervals == 0:
        return grid[:: n // intervals]
    return [t0 + (1.0 - t0) * k / intervals for k in range(intervals + 1)]


@dataclass(frozen=True)
class SolverPlan:
    """Intervals ``times[k] -> times[k + 1]``, each integrated with ``kinds[k]``."""

    times: tuple[float, ...]
    kinds: tuple[str, ...]  # "euler" (1 evaluation) or "midpoint" (2 evaluations)

    @property
    def nfe(self) -> int:
        return sum(2 if k == "midpoint" else 1 for k in self.kinds)

    @property
    def eval_times(self) -> tuple[float, ...]:
        """Flow time of each network evaluation, in order."""
        out: list[float] = []
        for k, kind in enumerate(self.kinds):
            t, h = self.times[k], self.times[k + 1] - self.times[k]
            out.append(t)
            if kind == "midpoint":
                out.append(t + h / 2)
        return tuple(out)


def make_plan(nfe: int, solver: str = "midpoint", steps: int = 12, t0: float = 0.5) -> SolverPlan:
    """The plan with ``nfe`` network evaluations.

    Euler: ``nfe`` intervals. Midpoint: ``nfe // 2`` midpoint intervals, plus one final Euler
    interval when ``nfe`` is odd (so ``nfe = 1`` is a single Euler step).
    """
    if not isinstance(nfe, int) or isinstance(nfe, bool) or nfe < 1:
        raise ConfigError(f"NFE must be an int >= 1, got {nfe!r}")
    if solver == "euler":
        kinds = ("euler",) * nfe
    elif solver == "midpoint":
        kinds = ("midpoint",) * (nfe // 2) + ("euler",) * (nfe % 2)
    else:
        raise ConfigError(f"unknown solver {solver!r}; choose 'euler' or 'midpoint'")
    return SolverPlan(tuple(time_schedule(steps, t0, len(kinds))), kinds)


def solve(velocity: Velocity, z: torch.Tensor, plan: SolverPlan) -> torch.Tensor:
    """Integrate ``dx/dt = v(x, t)`` from ``x(t0) = z`` to ``t = 1`` along ``plan``."""
    x, j = z, 0
    for k, kind in enumerate(plan.kinds):
        t, h = plan.times[k], plan.times[k + 1] - plan.times[k]
        v = velocity(x, t, j)
        if kind == "midpoint":
            v = velocity(x + (h / 2) * v, t + h / 2, j + 1)
            j += 2
        else:
            j += 1
        x = x + h * v
    return x
