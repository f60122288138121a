"""The streaming contract and its harness: the harness must pass good processors and catch
bad ones (non-causal, under-declared latency, chunk-dependent output)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from livesense.streaming.processor import Chain, concat_chunks
from livesense.streaming.testing import (
    assert_causal,
    assert_offline_equals_chunked,
)


def test_chain_latencies_add_and_flush_drains(signal, toy):
    chain = Chain([toy.Delay(10), toy.MovingAverage(), toy.Delay(5)])
    assert chain.latency == 15
    out = chain.process(signal)
    ref = toy.MovingAverage().process(signal)
    np.testing.assert_allclose(out, ref, atol=1e-6)
    assert_offline_equals_chunked(
        lambda: Chain([toy.Delay(10), toy.MovingAverage(), toy.Delay(5)]), signal
    )
    assert_causal(
        lambda: Chain([toy.Delay(10), toy.MovingAverage(), toy.Delay(5)]), signal, cut=700
    )


def test_chain_requires_processors():
    with pytest.raises(ValueError, match="at least one"):
        Chain([])


def test_concat_chunks_types():
    assert concat_chunks([None, np.zeros((1, 0))]) is None
    t = concat_chunks([torch.ones(1, 2), None, torch.zeros(1, 3)])
    assert isinstance(t, torch.Tensor) and t.shape == (1, 5)
    n = concat_chunks([np.ones((2, 1)), np.ones((2, 4))])
    assert n.shape == (2, 5)
