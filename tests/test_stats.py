"""LatencySummary: the one p50 / p99 / max."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from livesense.stats import LatencySummary


def test_summary_of_known_values() -> None:
    s = LatencySummary.of([0.001 * i for i in range(1, 101)], scale=1000.0)
    assert s is not None and s.n == 100
    assert s.p50 == pytest.approx(50.5) and s.p99 == pytest.approx(99.01) and s.max == 100.0
    assert s.to_json(1) == {"p50": 50.5, "p99": 99.0, "max": 100.0}
    assert LatencySummary.of([]) is None
    assert LatencySummary.of(iter([3.0])) == LatencySummary(3.0, 3.0, 3.0, 1)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1, max_size=200))
def test_summary_matches_numpy_and_is_ordered(values: list[float]) -> None:
    s = LatencySummary.of(values)
    assert s is not None
    assert s.p50 == pytest.approx(float(np.percentile(values, 50)))
    assert s.p99 == pytest.approx(float(np.percentile(values, 99)))
    assert min(values) <= s.p50 <= s.p99 <= s.max == max(values)
