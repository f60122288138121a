"""Early-skip schedules and the Euler/midpoint solvers."""

from __future__ import annotations

import pytest
import torch

from livesense.errors import ConfigError
from livesense.models.binaural.solvers import make_plan, solve, time_schedule


def test_early_skip_schedule() -> None:
    assert time_schedule(12, 0.5) == pytest.approx([k / 12 for k in range(6, 13)])
    plan = make_plan(6, "midpoint", 12, 0.5)  # the paper's: 3 midpoint intervals of 2/12
    assert plan.nfe == 6 and plan.times == pytest.approx((0.5, 8 / 12, 10 / 12, 1.0))
    assert plan.eval_times == pytest.approx([6 / 12, 7 / 12, 8 / 12, 9 / 12, 10 / 12, 11 / 12])
    assert make_plan(1, "midpoint").kinds == ("euler",)
    assert make_plan(3, "midpoint").kinds == ("midpoint", "euler")
    assert make_plan(4, "euler").nfe == 4 and make_plan(4, "euler").times[0] == 0.5
    assert make_plan(5, "euler", t0=0.0).times == pytest.approx((0, 0.2, 0.4, 0.6, 0.8, 1.0))
    with pytest.raises(ConfigError):
        make_plan(0)


def test_solvers_integrate() -> None:
    # dx/dt = t: exact x(1) = x(t0) + (1 - t0^2) / 2; midpoint is exact for linear v(t),
    # Euler underestimates by h/2 * (1 - t0).
    z = torch.zeros(3)
    calls: list[int] = []

    def v(x: torch.Tensor, t: float, j: int) -> torch.Tensor:
        calls.append(j)
        return torch.full_like(x, t)

    x = solve(v, z, make_plan(6, "midpoint", 12, 0.5))
    assert calls == list(range(6))
    assert x[0].item() == pytest.approx(0.375, abs=1e-6)
    x = solve(v, z, make_plan(2, "euler", 12, 0.5))
    assert x[0].item() == pytest.approx(0.375 - 0.25 / 2 * 0.5, abs=1e-6)
