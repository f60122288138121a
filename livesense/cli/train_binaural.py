"""``livesense train-binaural``: train BinauralFlow with conditional flow matching."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from livesense.cli.options import positive_float as pos_float
from livesense.cli.progress import ProgressBar
from livesense.cli.signals import graceful_stop
from livesense.models.binaural.config import PRESETS
from livesense.models.binaural.training import TrainConfig, train

DESCRIPTION = """\
Train BinauralFlow with conditional flow matching (Adam). Reads DIR/train and DIR/val \
(validation loss), or DIR itself. Checkpoints go to --out (latest) and --out/best (best \
validation loss); Ctrl-C or SIGTERM saves after the current step before exiting (a second one \
at once); --resume continues."""

_D = TrainConfig(data=Path(), out=Path(), steps=1)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, metavar="CKPT_DIR", help="checkpoint folder")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="model size (default small; --resume: the checkpoint's)",
    )
    p.add_argument("--steps", type=int, required=True, metavar="N", help="total training steps")
    p.add_argument("--batch", type=int, default=_D.batch, metavar="B", help=f"default {_D.batch}")
    p.add_argument(
        "--segment-seconds",
        type=pos_float,
        default=_D.segment_seconds,
        metavar="S",
        help=f"crop length (default {_D.segment_seconds:g})",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=_D.lr,
        help=f"Adam learning rate (default {_D.lr:g}, the paper's)",
    )
    p.add_argument("--val-every", type=int, default=_D.val_every, metavar="N")
    p.add_argument("--save-every", type=int, default=_D.save_every, metavar="N")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--seed", type=int, default=_D.seed)
    p.add_argument("--threads", type=int, default=_D.threads, metavar="N", help="torch CPU threads")
    p.add_argument("--device", default=_D.device, help=f"cpu or cuda (default {_D.device})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


class _StepMeter:
    """Feeds the bar a smoothed loss and the step rate of this run."""

    def __init__(self, bar: ProgressBar):
        self.bar = bar
        self.smooth: float | None = None
        self.start: tuple[float, int] | None = None  # (time, step) before the first step

    def __call__(self, step: int, loss: float) -> None:
        if self.start is None:
            self.start = (time.monotonic(), step - 1)
        self.smooth = loss if self.smooth is None else 0.95 * self.smooth + 0.05 * loss
        rate = (step - self.start[1]) / max(time.monotonic() - self.start[0], 1e-9)
        self.bar.update(step, loss=self.smooth, rate=rate)


def run(args: argparse.Namespace) -> int:
    """Train; 0, or 130 after Ctrl-C / SIGTERM (the checkpoint is saved)."""
    cfg = TrainConfig(
        data=Path(args.data),
        out=Path(args.out),
        steps=args.steps,
        preset=args.preset,
        batch=args.batch,
        segment_seconds=args.segment_seconds,
        lr=args.lr,
        val_every=args.val_every,
        save_every=args.save_every,
        resume=args.resume,
        seed=args.seed,
        threads=args.threads,
        device=args.device,
        command=" ".join(["livesense", *sys.argv[1:]]),
    )
    fields = {"loss": "loss {:.4f}", "rate": "{:.2f} steps/s"}
    with (
        ProgressBar("train", cfg.steps, "items", not args.no_progress, fields, eta=True) as bar,
        graceful_stop() as stop,
    ):
        res = train(cfg, on_step=_StepMeter(bar), log=bar.log, stop=stop.is_set)
    last = res.train_history[-1][1] if res.train_history else float("nan")
    val = f", best val loss {res.best_val:.5f}" if res.best_val is not None else ""
    print(f"step {res.step}: train loss {last:.5f}{val}; checkpoint in {res.out}")
    return 130 if res.interrupted else 0
