"""``livesense eval-binaural``: the neural and DSP renderers scored against recordings."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from livesense.audio.metrics import METRIC_KEYS
from livesense.audio.plot import plot_comparison
from livesense.cli.options import add_device_options, device_dtype, positive_float, positive_int
from livesense.cli.progress import ProgressBar
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural import bundled_checkpoint
from livesense.models.binaural.evaluation import SAMPLE_RATE, EvalResult, evaluate_dataset

DESCRIPTION = """\
Render every sequence of DIR/test (or DIR) with the streaming neural renderer (--checkpoint; \
default the bundled model) and the DSP baseline, and report L2, amplitude, phase, MRSTFT, ILD \
and IPD errors against binaural.wav, averaged weighted by length."""

LABELS = {"target": "target (demo room)", "neural": "neural", "dsp": "DSP (direct HRTF)"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    p.add_argument(
        "--checkpoint",
        metavar="CKPT",
        help="BinauralFlow checkpoint (default: the bundled small model)",
    )
    p.add_argument("--dsp-only", action="store_true", help="evaluate the DSP renderer only")
    p.add_argument(
        "--nfe", type=positive_int, default=None, metavar="N", help="network evaluations"
    )
    p.add_argument(
        "--temperature",
        type=float,
        default=None,
        metavar="T",
        help="sampling noise scale (default: the checkpoint's)",
    )
    p.add_argument(
        "--plot", metavar="PNG", help="write spectrograms of target / neural / DSP for one sequence"
    )
    p.add_argument(
        "--plot-sequence",
        default="",
        metavar="NAME",
        help="the sequence --plot shows (default: the first)",
    )
    p.add_argument("--json", metavar="OUT", help="write the results as JSON")
    p.add_argument(
        "--max-seconds",
        type=positive_float,
        default=None,
        metavar="S",
        help="score only the first S seconds of each sequence",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_device_options(p.add_argument_group("device"))


def format_table(res: EvalResult) -> Table:
    """One row per metric, columns neural / DSP."""
    t = Table(title=f"{res.sequences} sequences, {res.seconds:.1f} s ({res.data})")
    t.add_column("metric")
    t.add_column("neural" if res.neural is not None else "neural (no checkpoint)", justify="right")
    t.add_column(LABELS["dsp"], justify="right")
    for k in METRIC_KEYS:
        nv = "-" if res.neural is None else f"{res.neural[k]:.6g}"
        t.add_row(k, nv, f"{res.dsp[k]:.6g}")
    return t


def run(args: argparse.Namespace) -> int:
    checkpoint = args.checkpoint
    if args.dsp_only:
        for flag, value in (("--checkpoint", checkpoint), ("--nfe", args.nfe)):
            if value is not None:
                raise ConfigError(f"--dsp-only and {flag} exclude each other")
        if args.temperature is not None:
            raise ConfigError("--dsp-only and --temperature exclude each other")
    elif checkpoint is None:
        checkpoint = bundled_checkpoint()
    device, dtype = device_dtype(args)
    with ProgressBar("eval-binaural", None, "items", not args.no_progress) as bar:
        res = evaluate_dataset(
            args.data,
            checkpoint=checkpoint,
            nfe=args.nfe,
            max_seconds=args.max_seconds,
            temperature=args.temperature,
            keep=args.plot_sequence if args.plot else None,
            on_progress=bar.count,
            device=device,
            dtype=dtype,
        )
    Console().print(format_table(res))
    if args.plot and res.kept:
        renders = {LABELS[k]: res.kept[k] for k in LABELS if res.kept.get(k) is not None}
        title = f"sequence {res.kept.get('sequence', '')}"
        try:
            png = plot_comparison(renders, args.plot, SAMPLE_RATE, title)
        except OSError as e:
            raise LivesenseError(f"--plot {args.plot}: cannot write: {e}") from None
        print(f"wrote {png}", file=sys.stderr)
    if args.json:
        out = Path(args.json)
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(res.to_json(), indent=2) + "\n")
        except OSError as e:
            raise LivesenseError(f"--json {out}: cannot write: {e}") from None
        print(f"wrote {out}", file=sys.stderr)
    return 0
