"""Training batches for BinauralFlow: dataset splits, random crops with per-frame poses, the
DSP prior's renders, and fixed validation crops.

A crop's poses are those at each STFT frame's newest sample, as the streaming renderer uses
them; with a ``"dsp"`` prior each crop carries the matching samples of a DSP render of the
whole sequence from its start (the renderer's own state at that point).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch

from livesense.audio.dataset import (
    BinauralDataset,
    list_sequences,
    poses_at_samples,
    read_wav_segment,
)
from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.hrtf import load_hrirs
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import FlowBatch

__all__ = ["DspRenders", "find_splits", "make_batch", "segment_samples", "validation_batches"]


def find_splits(data: str | os.PathLike[str]) -> tuple[Path, Path | None, str | None]:
    """``(train dir, val dir or None, note)`` for ``--data``; clear errors when there is no data."""
    root = Path(data)
    if not root.exists():
        raise LivesenseError(f"--data {root}: folder not found")
    if not root.is_dir():
        raise LivesenseError(f"--data {root}: not a folder")
    if (root / "train").is_dir():
        train_dir = root / "train"
        val_dir = root / "val"
        if val_dir.is_dir():
            try:
                list_sequences(val_dir)
                return train_dir, val_dir, None
            except LivesenseError:
                pass
        return train_dir, None, f"no sequences in {val_dir}: validation skipped"
    return root, None, f"{root} has no train/ folder: training on all of it, validation skipped"


def segment_samples(seconds: float, cfg: BinauralFlowConfig) -> int:
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigError(f"--segment-seconds must be positive, got {seconds}")
    n = int(round(seconds * cfg.sample_rate)) // cfg.hop * cfg.hop
    return max(n, cfg.hop * 2)


class DspRenders:
    """The DSP renderer's output for whole sequences of a dataset, rendered once and kept.

    A ``"dsp"`` prior conditions on the DSP render; the streaming renderer runs its DSP
    renderer from the stream start, so crops are cut from the render of the whole sequence
    (not rendered from the crop start, which would miss the delay line's history)."""

    def __init__(self, ds: BinauralDataset, cfg: BinauralFlowConfig):
        self._ds = ds
        self._hrirs = load_hrirs(None, cfg.sample_rate)
        self._config = DspRendererConfig(sample_rate=cfg.sample_rate)
        self._cache: dict[int, np.ndarray] = {}

    def get(self, sequence: int) -> np.ndarray:
        """The DSP render ``(2, n)`` float32 of sequence number ``sequence``."""
        if sequence not in self._cache:
            info = self._ds.sequences[sequence]
            mono = read_wav_segment(info.path / "mono.wav", 0, info.n_samples)
            tx, rx = self._ds.trajectories(sequence)
            dsp = DspBinauralRenderer(tx, rx, hrirs=self._hrirs, config=self._config)
            self._cache[sequence] = np.asarray(dsp.process(mono), np.float32)
        return self._cache[sequence]


def make_batch(
    ds: BinauralDataset,
    indices: list[int],
    cfg: BinauralFlowConfig,
    dsp: DspRenders | None = None,
) -> FlowBatch:
    """Items ``indices`` of ``ds`` -> a :class:`FlowBatch` with per-frame poses ``(B, 14, T)``.

    Frame ``i`` of a crop starting at ``s`` gets the poses at sample ``s + (i + 1) * hop - 1``
    (its newest sample), exactly as :class:`NeuralBinauralRenderer` conditions it. For a
    ``"dsp"`` prior the batch carries the DSP render of the same samples (from ``dsp``, made
    here when not given)."""
    if cfg.prior == "dsp" and dsp is None:
        dsp = DspRenders(ds, cfg)
    seq_index = {info.name: i for i, info in enumerate(ds.sequences)}
    monos, bins, poses, dsps = [], [], [], []
    for idx in indices:
        item = ds[idx]
        mono, binaural = item["mono"], item["binaural"]
        assert isinstance(mono, torch.Tensor) and isinstance(binaural, torch.Tensor)
        n = mono.shape[-1]
        start = int(item["start"])  # type: ignore[call-overload]
        tx, rx = ds.trajectories(seq_index[str(item["sequence"])])
        stamps = start + (np.arange(n // cfg.hop) + 1) * cfg.hop - 1
        p = np.concatenate(
            [
                poses_at_samples(tx, stamps, cfg.sample_rate),
                poses_at_samples(rx, stamps, cfg.sample_rate),
            ],
            axis=-1,
        )  # (T, 14)
        monos.append(mono[0])
        bins.append(binaural)
        poses.append(torch.from_numpy(p.T.copy()))
        if cfg.prior == "dsp":
            assert dsp is not None
            full = dsp.get(seq_index[str(item["sequence"])])
            seg = np.zeros((2, n), dtype=np.float32)  # zeros past the end, like the wav reads
            part = full[:, start : start + n]
            seg[:, : part.shape[-1]] = part
            dsps.append(torch.from_numpy(seg))
    d = torch.stack(dsps) if dsps else None
    return FlowBatch(torch.stack(monos), torch.stack(bins), torch.stack(poses), d)


def validation_batches(
    ds: BinauralDataset, count: int, batch: int, cfg: BinauralFlowConfig
) -> list[FlowBatch]:
    """Fixed validation batches: ``count`` crops spread evenly over ``ds`` (non-random crops)."""
    idx = np.unique(np.linspace(0, len(ds) - 1, num=min(count, len(ds))).round().astype(int))
    ids = [int(i) for i in idx]
    dsp = DspRenders(ds, cfg) if cfg.prior == "dsp" else None
    return [make_batch(ds, ids[i : i + batch], cfg, dsp) for i in range(0, len(ids), batch)]
