"""``livesense synth-binaural``: synthetic binaural training data in the Richard et al. layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from livesense.audio.hrtf import load_hrirs
from livesense.audio.synth import SAMPLE_RATE, SPLITS, SynthConfig, generate_dataset
from livesense.cli.options import positive_float, positive_int
from livesense.cli.outputs import prepare_dataset_dir
from livesense.cli.progress import ProgressBar

DESCRIPTION = """\
Render speech (espeak-ng voices or your wav files) for moving speakers and turning listeners \
in a simulated room (default: the demo room) and write one folder per sequence: mono.wav, \
binaural.wav (48 kHz), tx_positions.txt (120 Hz, listener-relative), rx_positions.txt when \
the listener turns. A DIR that already holds a dataset (split.json, seq_* folders) is refused \
unless --force, which deletes that dataset first."""

_D = SynthConfig(out=Path())


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace a dataset already in DIR (its split.json and seq_* folders are deleted)",
    )
    p.add_argument(
        "--sequences",
        type=positive_int,
        default=_D.sequences,
        metavar="N",
        help=f"number of sequences ({_D.sequences})",
    )
    p.add_argument(
        "--seconds",
        type=positive_float,
        default=_D.seconds,
        metavar="S",
        help=f"seconds each ({_D.seconds:g})",
    )
    p.add_argument("--seed", type=int, default=_D.seed, metavar="K", help="same seed, same files")
    p.add_argument("--room", choices=("demo", "random"), default=_D.room)
    p.add_argument("--voices", metavar="DIR", help="folder of speech wav files (else espeak-ng)")
    p.add_argument("--split", choices=(*SPLITS, "all"), default=_D.split)
    p.add_argument("--hrtf", metavar="FILE", help="a .sofa or .npz HRIR set (default: MIT KEMAR)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    prepare_dataset_dir(args.out, "--out", args.force)
    config = SynthConfig(
        out=Path(args.out),
        sequences=args.sequences,
        seconds=args.seconds,
        seed=args.seed,
        room=args.room,
        voices=args.voices,
        split=args.split,
    )
    hrirs = load_hrirs(args.hrtf, SAMPLE_RATE) if args.hrtf else None
    with ProgressBar("synth-binaural", None, "items", not args.no_progress) as bar:
        manifest = generate_dataset(config, hrirs, on_progress=bar.count)
    total = sum(len(s["sequences"]) for s in manifest["splits"].values())  # type: ignore[union-attr]
    print(f"wrote {total} sequences to {args.out}")
    return 0
