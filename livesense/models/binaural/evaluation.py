"""Evaluate binaural renderers on a dataset (``livesense eval-binaural``).

Every sequence of ``DIR/test`` (or ``DIR`` when it has no ``test/``) is rendered from its mono
with the neural renderer as deployed (streaming :class:`NeuralBinauralRenderer` on the
sequence's speaker and listener trajectories; ``rx_positions.txt`` moves the listener) and with
the DSP baseline (:class:`DspBinauralRenderer`: direct-path HRTF, no room); without
``--checkpoint`` the bundled model is evaluated (``--dsp-only``: the baseline alone). The metrics of
:mod:`livesense.audio.metrics` against ``binaural.wav`` are averaged weighted by length.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livesense.audio.dataset import BinauralDataset, read_wav_segment
from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.hrtf import HrirSet, load_hrirs
from livesense.audio.metrics import METRIC_KEYS, average_weighted, evaluate_pair
from livesense.errors import ConfigError, LivesenseError
from livesense.progress import count_progress

__all__ = [
    "EvalResult",
    "add_eval_parser",
    "cmd_eval",
    "evaluate_dataset",
    "find_test_dir",
    "format_table",
    "plot_renders",
]

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


def _to_numpy(y: Any) -> np.ndarray:
    if isinstance(y, torch.Tensor):
        return y.detach().cpu().numpy().astype(np.float64)
    return np.asarray(y, dtype=np.float64)


def evaluate_dataset(
    data: str | Path,
    checkpoint: str | Path | None = None,
    nfe: int | None = None,
    max_seconds: float | None = None,
    hrirs: HrirSet | None = None,
    progress: bool = False,
    temperature: float | None = None,
    keep: str | None = None,
) -> EvalResult:
    """Render and score every test sequence (module docstring).

    ``max_seconds``: only the first ``max_seconds`` of each sequence are rendered and scored.
    ``temperature``: overrides the checkpoint's sampling temperature. ``keep``: the name of a
    sequence whose renders are kept in :attr:`EvalResult.kept` (target, neural, dsp) for a
    picture ("" = the first)."""
    if max_seconds is not None and not (math.isfinite(max_seconds) and max_seconds > 0):
        raise ConfigError(f"--max-seconds must be positive, got {max_seconds}")
    if nfe is not None and nfe <= 0:
        raise ConfigError(f"--nfe must be positive, got {nfe}")
    if temperature is not None and not (math.isfinite(temperature) and temperature >= 0):
        raise ConfigError(f"--temperature must be >= 0, got {temperature}")
    root = find_test_dir(data)
    model = None
    if checkpoint is not None:
        from livesense.models.binaural.checkpoint import load_checkpoint

        if not Path(checkpoint).exists():
            raise LivesenseError(f"--checkpoint {checkpoint}: not found")
        model, mcfg = load_checkpoint(checkpoint)
        if mcfg.sample_rate != SAMPLE_RATE:
            raise ConfigError(f"checkpoint sample rate {mcfg.sample_rate} Hz is not 48000 Hz")
        if temperature is not None:
            model.config = mcfg.replace(temperature=temperature)
    ds = BinauralDataset(root, None, SAMPLE_RATE, random_crop=False)
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
    with count_progress(progress) as bar:
        task = bar.add_task("eval-binaural", total=len(ds.sequences))
        for i, info in enumerate(ds.sequences):
            n = info.n_samples if limit is None else min(info.n_samples, limit)
            mono = read_wav_segment(info.path / "mono.wav", 0, n)  # (1, n)
            target = read_wav_segment(info.path / "binaural.wav", 0, n).astype(np.float64)
            tx, rx = ds.trajectories(i)
            row: dict[str, Any] = {"sequence": info.name, "samples": n}
            pred = None
            if model is not None:
                pred = render_neural(model, mono, tx, rx, nfe)
                m = evaluate_pair(pred, target, SAMPLE_RATE)
                neural_rows.append((m, n))
                row["neural"] = m
            dsp = _to_numpy(DspBinauralRenderer(tx, rx, hrirs=hr).process(mono))
            m = evaluate_pair(dsp, target, SAMPLE_RATE)
            dsp_rows.append((m, n))
            row["dsp"] = m
            if info.name == keep:
                kept = {"sequence": info.name, "target": target, "neural": pred, "dsp": dsp}
            per_seq.append(row)
            bar.advance(task)
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
    model: Any, mono: np.ndarray, speaker: Any, listener: Any, nfe: int | None = None
) -> np.ndarray:
    """The deployed streaming render of mono ``(1, n)`` -> ``(2, n)`` float64."""
    from livesense.models.binaural.renderer import NeuralBinauralRenderer

    r = NeuralBinauralRenderer(model, speaker=speaker, listener=listener, nfe=nfe)
    with torch.inference_mode():
        return _to_numpy(r.process(mono))


def plot_renders(kept: dict[str, Any], out: str | Path, seconds: float = 4.0) -> Path:
    """A PNG of left-ear spectrograms (dB): target, neural (when rendered) and DSP, one row
    each, plus the ILD per frame of all three (first ``seconds`` of the sequence)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from livesense.audio.plot import ild_over_time, power_spectrogram

    rows = [(k, kept[k]) for k in ("target", "neural", "dsp") if kept.get(k) is not None]
    labels = {"target": "target (demo room)", "neural": "neural", "dsp": "DSP (direct HRTF)"}
    n = min(int(seconds * SAMPLE_RATE), min(np.asarray(x).shape[-1] for _, x in rows))
    fig = Figure(figsize=(10, 2.2 * (len(rows) + 1)), constrained_layout=True)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows) + 1, 1, sharex=True)
    n_fft, hop = 1024, 256
    for ax, (key, x) in zip(axes, rows, strict=False):
        frames, p = power_spectrogram(np.asarray(x)[:, :n], n_fft, hop)  # (2, frames, bins)
        db = 10 * np.log10(p[0].T + 1e-10)  # (bins, frames)
        t = frames / SAMPLE_RATE
        f = np.fft.rfftfreq(n_fft, 1 / SAMPLE_RATE) / 1000
        ax.pcolormesh(t, f, db, shading="auto", vmin=-90, vmax=max(float(db.max()), -40.0))
        ax.set_ylim(0, 16)
        ax.set_ylabel("kHz")
        ax.set_title(f"{labels[key]}: left ear", fontsize=9, loc="left")
    ax = axes[-1]
    for key, x in rows:
        band = (375.0, SAMPLE_RATE / 2)
        t, ild = ild_over_time(np.asarray(x)[:, :n], SAMPLE_RATE, band, hop, n_fft, smooth_s=0.0)
        ax.plot(t, ild, label=labels[key], lw=1)
    ax.set_ylabel("ILD dB (R/L)")
    ax.set_xlabel("seconds")
    ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"sequence {kept.get('sequence', '')}", fontsize=10)
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=100)
    except OSError as e:
        raise LivesenseError(f"--plot {out}: cannot write: {e}") from None
    return out


def format_table(res: EvalResult) -> Any:
    """A rich table: one row per metric, columns neural / DSP."""
    from rich.table import Table

    t = Table(title=f"{res.sequences} sequences, {res.seconds:.1f} s ({res.data})")
    t.add_column("metric")
    t.add_column("neural" if res.neural is not None else "neural (no checkpoint)", justify="right")
    t.add_column("DSP (direct HRTF)", justify="right")
    for k in METRIC_KEYS:
        nv = "-" if res.neural is None else f"{res.neural[k]:.6g}"
        t.add_row(k, nv, f"{res.dsp[k]:.6g}")
    return t


def add_eval_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``eval-binaural`` to the livesense sub-commands; run it with :func:`cmd_eval`."""
    p = subparsers.add_parser(
        "eval-binaural",
        help="evaluate the neural and DSP binaural renderers on a dataset",
        description=(
            "Render every sequence of DIR/test (or DIR) with the streaming neural renderer "
            "(--checkpoint) and the DSP baseline, and report L2, amplitude, phase, MRSTFT, ILD "
            "and IPD errors against binaural.wav, averaged weighted by length."
        ),
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--checkpoint", metavar="CKPT",
                   help="BinauralFlow checkpoint (default: the bundled small model)")  # fmt: skip
    p.add_argument("--dsp-only", action="store_true", help="evaluate the DSP renderer only")
    p.add_argument("--nfe", type=int, default=None, metavar="N", help="network evaluations")
    p.add_argument("--temperature", type=float, default=None, metavar="T",
                   help="sampling noise scale (default: the checkpoint's)")  # fmt: skip
    p.add_argument("--plot", metavar="PNG",
                   help="write spectrograms of target / neural / DSP for one sequence")  # fmt: skip
    p.add_argument("--plot-sequence", default="", metavar="NAME",
                   help="the sequence --plot shows (default: the first)")  # fmt: skip
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument("--max-seconds", type=float, default=None, metavar="S",
                   help="score only the first S seconds of each sequence")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cmd_eval(args: argparse.Namespace) -> int:
    """Run ``eval-binaural``; LivesenseErrors propagate (the CLI prints them on one line)."""
    from rich.console import Console

    checkpoint = args.checkpoint
    if getattr(args, "dsp_only", False):
        if checkpoint is not None:
            raise ConfigError("--dsp-only and --checkpoint exclude each other")
    elif checkpoint is None:
        from livesense.models.binaural.checkpoint import bundled_checkpoint

        checkpoint = bundled_checkpoint()
    res = evaluate_dataset(
        args.data,
        checkpoint=checkpoint,
        nfe=args.nfe,
        max_seconds=args.max_seconds,
        progress=not getattr(args, "no_progress", False) and sys.stderr.isatty(),
        temperature=getattr(args, "temperature", None),
        keep=args.plot_sequence if getattr(args, "plot", None) else None,
    )
    Console().print(format_table(res))
    if getattr(args, "plot", None) and res.kept:
        print(f"wrote {plot_renders(res.kept, args.plot)}", file=sys.stderr)
    if args.json:
        out = Path(args.json)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res.to_json(), indent=2) + "\n")
        except OSError as e:
            raise LivesenseError(f"--json {out}: cannot write: {e}") from None
        print(f"wrote {out}", file=sys.stderr)
    return 0
