"""Reusable checks for the streaming contract (used by the test suite, usable by plug-ins).

- :func:`assert_offline_equals_chunked`: the output of one offline pass equals the
  concatenated outputs of a chunked pass, for any split of the input.
- :func:`assert_causal`: changing input after sample ``n`` never changes output emitted
  before, and output sample ``k`` only depends on input up to ``k + latency``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from livesense.streaming.processor import Chunk, StreamProcessor, concat_chunks, to_numpy

Factory = Callable[[], StreamProcessor]


def _to_numpy(x: Chunk | None) -> np.ndarray | None:
    return None if x is None else to_numpy(x)


def _slice_time(x: Chunk, start: int, stop: int) -> Chunk:
    return x[..., start:stop]


def split_points(total: int, sizes: Sequence[int]) -> list[int]:
    """Boundaries for chunks of the given sizes (cycled) covering ``total`` samples."""
    if not sizes or any(s <= 0 for s in sizes):
        raise ValueError("chunk sizes must be positive")
    bounds, pos, i = [0], 0, 0
    while pos < total:
        pos = min(total, pos + sizes[i % len(sizes)])
        bounds.append(pos)
        i += 1
    return bounds


def random_splits(total: int, rng: np.random.Generator, max_chunk: int) -> list[int]:
    """Random chunk boundaries (chunks of 0..max_chunk samples, empty chunks included)."""
    sizes = []
    pos = 0
    while pos < total:
        s = int(rng.integers(0, max_chunk + 1))
        sizes.append(s)
        pos += s
    bounds = [0]
    for s in sizes:
        bounds.append(min(total, bounds[-1] + s))
    return bounds


def run_chunked(
    proc: StreamProcessor, x: Chunk, bounds: Sequence[int]
) -> tuple[Chunk | None, list[int]]:
    """Feed ``x`` split at ``bounds``; return the whole output and the output length after
    each step (before flush)."""
    proc.reset()
    outs, lengths, emitted = [], [], 0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        y = proc.step(_slice_time(x, a, b))
        if y is not None:
            outs.append(y)
            emitted += y.shape[-1]
        lengths.append(emitted)
    outs.append(proc.flush())
    return concat_chunks(outs), lengths


def assert_offline_equals_chunked(
    factory: Factory,
    x: Chunk,
    splits: Sequence[Sequence[int]] | None = None,
    atol: float = 1e-5,
    seed: int = 0,
    n_random: int = 3,
) -> None:
    """Offline output == chunked output for chunk size 1, a prime, and random splits.

    ``splits`` adds explicit boundary lists. Raises AssertionError with the worst mismatch.
    """
    total = x.shape[-1]
    ref = _to_numpy(factory().process(x))
    assert ref is not None and ref.size > 0, "offline pass produced no output"
    rng = np.random.default_rng(seed)
    cases: list[tuple[str, list[int]]] = [
        ("chunk=1", split_points(total, [1])),
        ("chunk=37", split_points(total, [37])),
        ("chunk=480", split_points(total, [480])),
    ]
    cases += [(f"random#{i}", random_splits(total, rng, 700)) for i in range(n_random)]
    cases += [(f"explicit#{i}", list(b)) for i, b in enumerate(splits or [])]
    for name, bounds in cases:
        proc = factory()
        got, _ = run_chunked(proc, x, bounds)
        got = _to_numpy(got)
        assert got is not None, f"{name}: chunked pass produced no output"
        assert got.shape == ref.shape, f"{name}: shape {got.shape} != offline {ref.shape}"
        err = float(np.max(np.abs(got - ref))) if ref.size else 0.0
        assert err <= atol, f"{name}: max abs diff {err:.3g} > {atol:g}"


def _default_perturb(x: Chunk, cut: int) -> Callable[[Chunk], Chunk]:
    """Adds seeded noise to everything from sample ``cut`` on."""
    if isinstance(x, torch.Tensor):
        g = torch.Generator().manual_seed(1234)
        noise_t = torch.randn(x.shape, generator=g, dtype=torch.float64).to(x.dtype)

        def perturb_t(s: torch.Tensor) -> torch.Tensor:
            return torch.cat([s[..., :cut], s[..., cut:] + noise_t[..., cut:]], dim=-1)

        return perturb_t
    noise = np.random.default_rng(1234).standard_normal(x.shape).astype(x.dtype)

    def perturb(s: np.ndarray) -> np.ndarray:
        return np.concatenate([s[..., :cut], s[..., cut:] + noise[..., cut:]], axis=-1)

    return perturb


def assert_causal(
    factory: Factory,
    x: Chunk,
    cut: int,
    perturb: Callable[[Chunk], Chunk] | None = None,
    atol: float = 0.0,
    check_latency: bool = True,
) -> None:
    """Changing input from sample ``cut`` on never changes output emitted before it.

    Checks (1) the output emitted after feeding exactly ``x[..., :cut]`` is identical for
    ``x`` and a perturbed ``x'``, and that it is non-empty (so the check can fail); (2) in the
    offline outputs, the first ``cut - (latency + granularity - 1)`` samples are identical (the
    declared timing bounds the look-ahead; skip with ``check_latency=False`` when output is not in
    input samples, e.g. spectrogram frames).
    """
    total = x.shape[-1]
    assert 0 < cut < total, "cut must lie inside the signal"
    if perturb is None:
        perturb = _default_perturb(x, cut)
    x2 = perturb(x)
    bounds = [0, cut, total]
    proc = factory()
    a, la = run_chunked(proc, x, bounds)
    b, lb = run_chunked(factory(), x2, bounds)
    a, b = _to_numpy(a), _to_numpy(b)
    assert a is not None and b is not None
    n_before = la[0]
    assert n_before == lb[0], "different amounts of output emitted for identical past input"
    assert n_before > 0, "nothing was emitted before the cut; choose a later cut"
    err = float(np.max(np.abs(_slice_time(a, 0, n_before) - _slice_time(b, 0, n_before))))
    assert err <= atol, (
        f"output emitted before the cut changed with future input (max diff {err:.3g})"
    )
    lookahead = int(getattr(proc, "latency", 0)) + int(getattr(proc, "granularity", 1)) - 1
    safe = cut - lookahead
    if check_latency and safe > 0:
        # Offline (one chunk) so look-ahead inside a chunk cannot hide behind a chunk boundary.
        a, b = _to_numpy(factory().process(x)), _to_numpy(factory().process(x2))
        err2 = float(np.max(np.abs(_slice_time(a, 0, safe) - _slice_time(b, 0, safe))))
        assert err2 <= atol, (
            f"output before sample {safe} (cut - latency - granularity + 1) depends on future "
            f"input (max diff {err2:.3g}); "
            f"declared latency {proc.latency} is too small"
        )
