"""Evaluate binaural renderers on a dataset (``livesense eval-binaural``).

Every sequence of ``DIR/test`` (or ``DIR`` when it has no ``test/``) is rendered from its mono
with the neural renderer as deployed (a :class:`~.engine.RenderEngine` stream on the
sequence's speaker and listener trajectories; ``rx_positions.txt`` moves the listener) and with
the DSP baseline (:class:`DspBinauralRenderer`: direct-path HRTF, no room); without
``--checkpoint`` the bundled model is evaluated (``--dsp-only``: the baseline alone). The metrics of
:mod:`livesense.audio.metrics` against ``binaural.wav`` are averaged weighted by length.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livesense.audio.dataset import BinauralDataset, read_wav_segment
from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.hrtf import HrirSet, load_hrirs
from livesense.audio.metrics import average_weighted, evaluate_pair
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural.checkpoint import load_checkpoint
from livesense.models.binaural.engine import RenderEngine
from livesense.streaming.processor import to_numpy

__all__ = ["EvalResult", "evaluate_dataset", "find_test_dir", "render_neural"]

SAMPLE_RATE = 48000


@dataclass
class EvalResult:
    """Length-weighted metrics (``neural`` None without a checkpoint) and per-sequence rows."""

    neural: dict[str, float] | None
    dsp: dict[str, float]
    sequences: int
    seconds: float
    per_sequence: list[dict[str, Any]] = field(default_factory=list)
    data: str = ""
    checkpoint: str | None = None
    nfe: int | None = None
    temperature: float | None = None
    kept: dict[str, Any] = field(default_factory=dict)  # renders of one sequence (``keep``)

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` document."""
        return {
            "neural": self.neural,
            "dsp": self.dsp,
            "sequences": self.sequences,
            "seconds": self.seconds,
            "data": self.data,
            "checkpoint": self.checkpoint,
            "nfe": self.nfe,
            "temperature": self.temperature,
            "per_sequence": self.per_sequence,
        }


def find_test_dir(data: str | Path) -> Path:
    """``DIR/test`` if it exists, else ``DIR``; a clear error when ``DIR`` is missing."""
    root = Path(data)
    if not root.exists():
        raise LivesenseError(f"--data {root}: folder not found")
    if not root.is_dir():
        raise LivesenseError(f"--data {root}: not a folder")
    return root / "test" if (root / "test").is_dir() else root


def evaluate_dataset(
    data: str | Path,
    checkpoint: str | Path | None = None,
    nfe: int | None = None,
    max_seconds: float | None = None,
    hrirs: HrirSet | None = None,
    temperature: float | None = None,
    keep: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> EvalResult:
    """Render and score every test sequence (module docstring).

    ``max_seconds``: only the first ``max_seconds`` of each sequence are rendered and scored.
    ``temperature``: overrides the checkpoint's sampling temperature. ``keep``: the name of a
    sequence whose renders are kept in :attr:`EvalResult.kept` (target, neural, dsp) for a
    picture ("" = the first). ``on_progress(done, total)`` after each sequence. The neural
    renders run through a :class:`~.engine.RenderEngine` slot on ``device`` in ``dtype``."""
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ConfigError(f"--max-seconds must be positive, got {max_seconds}")
    if nfe is not None and nfe <= 0:
        raise ConfigError(f"--nfe must be positive, got {nfe}")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"--temperature must be >= 0, got {temperature}")
    root = find_test_dir(data)
    model = None
    if checkpoint is not None:
        if not Path(checkpoint).exists():
            raise LivesenseError(f"--checkpoint {checkpoint}: not found")
        model, mcfg = load_checkpoint(checkpoint)
        if mcfg.sample_rate != SAMPLE_RATE:
            raise ConfigError(f"checkpoint sample rate {mcfg.sample_rate} Hz is not 48000 Hz")
        if temperature is not None:
            model.config = mcfg.replace(temperature=temperature)
    ds = BinauralDataset(root, None, SAMPLE_RATE, random_crop=False)
    engine = None if model is None else RenderEngine(model, 1, nfe=nfe, device=device, dtype=dtype)
    hr = hrirs if hrirs is not None else load_hrirs(None, SAMPLE_RATE)
    neural_rows: list[tuple[dict[str, float], int]] = []
    dsp_rows: list[tuple[dict[str, float], int]] = []
    per_seq: list[dict[str, Any]] = []
    kept: dict[str, Any] = {}
    if keep is not None and ds.sequences:
        names = [info.name for info in ds.sequences]
        if keep and keep not in names:
            raise ConfigError(f"--plot-sequence {keep!r} is not in {root} ({', '.join(names)})")
        keep = keep or names[0]
    limit = None if max_seconds is None else max(1, int(round(max_seconds * SAMPLE_RATE)))
    for i, info in enumerate(ds.sequences):
        n = info.n_samples if limit is None else min(info.n_samples, limit)
        mono = read_wav_segment(info.path / "mono.wav", 0, n)  # (1, n)
        target = read_wav_segment(info.path / "binaural.wav", 0, n).astype(np.float64)
        tx, rx = ds.trajectories(i)
        row: dict[str, Any] = {"sequence": info.name, "samples": n}
        pred = None
        if model is not None:
            pred = render_neural(engine, mono, tx, rx)
            m = evaluate_pair(pred, target, SAMPLE_RATE)
            neural_rows.append((m, n))
            row["neural"] = m
        dsp = to_numpy(DspBinauralRenderer(tx, rx, hrirs=hr).process(mono), np.float64)
        m = evaluate_pair(dsp, target, SAMPLE_RATE)
        dsp_rows.append((m, n))
        row["dsp"] = m
        if info.name == keep:
            kept = {"sequence": info.name, "target": target, "neural": pred, "dsp": dsp}
        per_seq.append(row)
        if on_progress is not None:
            on_progress(i + 1, len(ds.sequences))
    if engine is not None:
        engine.close()
    total = sum(n for _, n in dsp_rows)
    return EvalResult(
        neural=average_weighted(neural_rows) if neural_rows else None,
        dsp=average_weighted(dsp_rows),
        sequences=len(dsp_rows),
        seconds=total / SAMPLE_RATE,
        per_sequence=per_seq,
        data=str(root),
        checkpoint=None if checkpoint is None else str(checkpoint),
        nfe=None if model is None else (nfe if nfe is not None else model.config.nfe),
        temperature=None if model is None else model.config.temperature,
        kept=kept,
    )


def render_neural(
    engine: RenderEngine, mono: np.ndarray, speaker: Any, listener: Any
) -> np.ndarray:
    """The deployed streaming render of mono ``(1, n)`` -> ``(2, n)`` float64: one engine slot,
    the whole clip stepped and flushed (equal to :class:`NeuralBinauralRenderer` on the CPU)."""
    stream = engine.open(speaker, listener)
    try:
        parts = [stream.step(mono), stream.flush()]
    finally:
        stream.close()
    return np.concatenate([to_numpy(p, np.float64) for p in parts if p is not None], axis=1)
