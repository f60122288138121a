"""Training loop for BinauralFlow (``livesense train-binaural``).

Data: ``DIR/train`` (and ``DIR/val`` for a validation loss) in the Richard et al. layout, or
``DIR`` itself (no validation). Each step draws ``batch`` random crops of ``segment_seconds``
(reproducible from ``(seed, step)``, so a resumed run draws what an uninterrupted one would),
with per-frame poses at each STFT frame's newest sample, as the streaming renderer uses them.

Validation: the flow-matching L1 on fixed crops (consecutive segments spread over ``DIR/val``)
with a fixed noise seed, so values are comparable over a run and across resumes.

Checkpoints (``--out CKPT_DIR``): ``model.safetensors`` + ``config.json`` (via
:func:`save_checkpoint`, ``extra`` = step, loss histories, data, elapsed seconds, command line),
``optimizer.pt`` (Adam state + step); the best validation checkpoint in ``CKPT_DIR/best/``.
``--steps`` is the total step count: ``--resume --steps 2000`` after 1000 steps trains 1000 more.
Ctrl-C (or SIGTERM) saves a checkpoint before exiting.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from livesense.models.binaural.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_checkpoint
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import (
    FlowBatch,
    batch_features,
    flow_matching_loss,
    train_step,
)
from livesense.models.binaural.renderer import random_model
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = [
    "OPTIMIZER_NAME",
    "TrainConfig",
    "TrainResult",
    "add_train_parser",
    "cmd_train",
    "find_splits",
    "make_batch",
    "train",
    "validation_batches",
    "validation_loss",
]

OPTIMIZER_NAME = "optimizer.pt"
BEST_DIR = "best"
VAL_NOISE_SEED = 20250613
NOISE_KEY = 1_000_003


@dataclass
class TrainConfig:
    """Options of one training run (the CLI flags of ``train-binaural``)."""

    data: Path
    out: Path
    steps: int
    preset: str | None = None  # None: "small" for a new run, the checkpoint's for --resume
    batch: int = 8
    segment_seconds: float = 1.0
    lr: float = 1e-4
    val_every: int = 200
    save_every: int = 500
    resume: bool = False
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    val_crops: int = 16
    log_every: int = 10  # train-loss history: one mean per this many steps
    progress: bool = True
    command: str = ""


@dataclass
class TrainResult:
    """What a run did: final step, per-step losses of this invocation, histories, paths."""

    step: int
    losses: list[float]
    train_history: list[list[float]]
    val_history: list[list[float]]
    out: Path
    interrupted: bool = False
    best_val: float | None = None
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- data


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


def _segment_samples(seconds: float, cfg: BinauralFlowConfig) -> int:
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


def validation_loss(
    model: BinauralFlowUNet, batches: list[FlowBatch], device: torch.device | str = "cpu"
) -> float:
    """Mean flow-matching L1 over ``batches`` with a fixed noise seed (comparable over time)."""
    cfg = model.config
    was_training = model.training
    model.eval()
    gen = torch.Generator().manual_seed(VAL_NOISE_SEED)
    total, count = 0.0, 0
    with torch.no_grad():
        for b in batches:
            cond, y, poses = batch_features(b.to(device), cfg)
            loss = flow_matching_loss(model, cond, y, poses, cfg.sigma, gen)
            total += float(loss) * b.mono.shape[0]
            count += b.mono.shape[0]
    model.train(was_training)
    return total / max(count, 1)


# ----------------------------------------------------------------------------- checkpoints


def _has_checkpoint(d: Path) -> bool:
    return (d / WEIGHTS_NAME).is_file() and (d / CONFIG_NAME).is_file()


def _save(
    out: Path,
    model: BinauralFlowUNet,
    opt: torch.optim.Optimizer | None,
    step: int,
    extra: dict[str, Any],
) -> None:
    """Write a checkpoint into a temporary sibling and move its files in (never half-written)."""
    tmp = out.parent / f".{out.name}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    save_checkpoint(tmp, model, model.config, extra)
    if opt is not None:
        torch.save({"optimizer": opt.state_dict(), "step": step}, tmp / OPTIMIZER_NAME)
    out.mkdir(parents=True, exist_ok=True)
    for f in tmp.iterdir():
        os.replace(f, out / f.name)
    tmp.rmdir()


def _load_resume(
    out: Path, device: torch.device
) -> tuple[BinauralFlowUNet, dict[str, Any], dict[str, Any]]:
    from livesense.models.binaural.checkpoint import load_checkpoint

    if not _has_checkpoint(out):
        raise LivesenseError(f"--resume: no checkpoint in {out} (model.safetensors + config.json)")
    if not (out / OPTIMIZER_NAME).is_file():
        raise LivesenseError(f"--resume: {out / OPTIMIZER_NAME} is missing (optimizer state)")
    model, _ = load_checkpoint(out, device)
    extra = json.loads((out / CONFIG_NAME).read_text()).get("extra", {})
    try:
        state = torch.load(out / OPTIMIZER_NAME, map_location=device, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise LivesenseError(f"--resume: cannot read {out / OPTIMIZER_NAME}: {e}") from None
    return model, extra, state


# ----------------------------------------------------------------------------- progress


class _NoBar:
    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def add_task(self, *a: object, **k: object) -> int:
        return 0

    def update(self, *a: object, **k: object) -> None:
        return None

    def log(self, msg: str) -> None:
        print(msg, file=sys.stderr)


class _RichBar:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}"),
            TextColumn("{task.fields[rate]:.2f} steps/s"),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )

    def __enter__(self) -> _RichBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def add_task(self, *a: Any, **k: Any) -> int:
        return int(self.progress.add_task(*a, **k))

    def update(self, *a: Any, **k: Any) -> None:
        self.progress.update(*a, **k)

    def log(self, msg: str) -> None:
        self.progress.console.print(msg, markup=False, highlight=False)


# ----------------------------------------------------------------------------- training


def _device(name: str) -> torch.device:
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise ConfigError(f"--device must be cpu or cuda, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available to torch")
    return torch.device(name)


def _check(cfg: TrainConfig) -> None:
    for name in ("steps", "batch", "val_every", "save_every", "val_crops", "log_every"):
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be positive")
    if not (math.isfinite(cfg.lr) and cfg.lr > 0):
        raise ConfigError(f"--lr must be positive, got {cfg.lr}")
    if cfg.threads is not None and cfg.threads <= 0:
        raise ConfigError("--threads must be positive")


def train(cfg: TrainConfig, on_step: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train (or resume) until ``cfg.steps`` total steps; see the module docstring.

    ``on_step(step, loss)`` runs after every step (tests use it to simulate Ctrl-C)."""
    _check(cfg)
    device = _device(cfg.device)
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    train_dir, val_dir, note = find_splits(cfg.data)
    out = Path(cfg.out)
    notes = [note] if note else []

    if cfg.resume:
        model, extra, opt_state = _load_resume(out, device)
        mcfg = model.config
        if cfg.preset is not None and cfg.preset != mcfg.name:
            raise ConfigError(
                f"--preset {cfg.preset} differs from the checkpoint's ({mcfg.name}) in {out}"
            )
        step = int(opt_state.get("step", extra.get("step", 0)))
        train_hist: list[list[float]] = [list(x) for x in extra.get("train_loss", [])]
        val_hist: list[list[float]] = [list(x) for x in extra.get("val_loss", [])]
        elapsed0 = float(extra.get("elapsed_s", 0.0))
        best = extra.get("best_val")
        best_val: float | None = None if best is None else float(best["loss"])
    else:
        if _has_checkpoint(out):
            raise LivesenseError(
                f"--out {out} already holds a checkpoint: pass --resume to continue it, "
                "or choose another folder"
            )
        mcfg = BinauralFlowConfig.preset(cfg.preset or "small")
        model = random_model(mcfg, cfg.seed).to(device)
        with torch.no_grad():  # start at the prior: zero velocity (a DSP prior = the DSP render)
            model.out_conv.conv.weight.zero_()
            model.out_conv.conv.bias.zero_()
        opt_state, step, train_hist, val_hist, elapsed0, best_val = None, 0, [], [], 0.0, None

    seg = _segment_samples(cfg.segment_seconds, mcfg)
    train_ds = BinauralDataset(train_dir, seg, mcfg.sample_rate, random_crop=True, seed=cfg.seed)
    train_dsp = DspRenders(train_ds, mcfg) if mcfg.prior == "dsp" else None
    val_sets: list[FlowBatch] = []
    if val_dir is not None:
        try:
            vds = BinauralDataset(val_dir, seg, mcfg.sample_rate, random_crop=False)
            val_sets = validation_batches(vds, cfg.val_crops, cfg.batch, mcfg)
        except LivesenseError as e:
            notes.append(f"validation skipped: {e}")

    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if opt_state is not None:
        opt.load_state_dict(opt_state["optimizer"])
        for g in opt.param_groups:
            g["lr"] = cfg.lr

    losses: list[float] = []
    t_start = time.monotonic()
    pending: list[float] = []
    smooth: float | None = None
    last_saved = step

    def extra_now() -> dict[str, Any]:
        return {
            "step": step,
            "train_loss": train_hist,
            "val_loss": val_hist,
            "best_val": None
            if best_val is None
            else {"step": _best_step(val_hist, best_val), "loss": best_val},
            "data": str(Path(cfg.data).resolve()),
            "preset": mcfg.name,
            "batch": cfg.batch,
            "segment_seconds": cfg.segment_seconds,
            "lr": cfg.lr,
            "seed": cfg.seed,
            "device": str(device),
            "elapsed_s": round(elapsed0 + time.monotonic() - t_start, 3),
            "command": cfg.command,
        }

    def validate(bar: _NoBar | _RichBar) -> None:
        nonlocal best_val
        train_part = "" if smooth is None else f"train loss {smooth:.5f}"
        if not val_sets or (val_hist and int(val_hist[-1][0]) == step):
            if train_part:
                bar.log(f"step {step}: {train_part}")
            return
        v = validation_loss(model, val_sets, device)
        val_hist.append([step, v])
        better = best_val is None or v < best_val
        if better:
            best_val = v
            _save(out / BEST_DIR, model, None, step, extra_now())
        parts = [p for p in (train_part, f"val loss {v:.5f}{' (best)' if better else ''}") if p]
        bar.log(f"step {step}: " + ", ".join(parts))

    for n in notes:
        print(f"note: {n}", file=sys.stderr)
    if step >= cfg.steps:
        print(f"already at step {step} >= --steps {cfg.steps}: nothing to do", file=sys.stderr)
        return TrainResult(step, [], train_hist, val_hist, out, False, best_val, notes)

    interrupted = False
    bar: _NoBar | _RichBar = _RichBar() if cfg.progress else _NoBar()
    with bar, _StopSignals():
        task = bar.add_task("train", total=cfg.steps, completed=step, loss=float("nan"), rate=0.0)
        try:
            if step == 0:
                validate(bar)  # the untrained baseline
            rng_t0, rng_s0 = time.monotonic(), step
            while step < cfg.steps:
                rng = np.random.default_rng([cfg.seed, step])
                train_ds.set_epoch(step)
                idx = [int(i) for i in rng.integers(len(train_ds), size=cfg.batch)]
                batch = make_batch(train_ds, idx, mcfg, train_dsp).to(device)
                gen = torch.Generator().manual_seed(cfg.seed * NOISE_KEY + step)
                loss = train_step(model, opt, batch, gen)
                step += 1
                losses.append(loss)
                pending.append(loss)
                smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
                if len(pending) >= cfg.log_every:
                    train_hist.append([step, float(np.mean(pending))])
                    pending = []
                rate = (step - rng_s0) / max(time.monotonic() - rng_t0, 1e-9)
                bar.update(task, completed=step, loss=smooth, rate=rate)
                if on_step is not None:
                    on_step(step, loss)
                if step % cfg.val_every == 0 or step == cfg.steps:
                    validate(bar)
                if step % cfg.save_every == 0 and step < cfg.steps:
                    _save(out, model, opt, step, extra_now())
                    last_saved = step
        except KeyboardInterrupt:
            interrupted = True
        if pending:
            train_hist.append([step, float(np.mean(pending))])
        if step != last_saved or interrupted or not _has_checkpoint(out):
            _save(out, model, opt, step, extra_now())
    if interrupted:
        print(
            f"interrupted at step {step}: checkpoint saved to {out} (continue with --resume)",
            file=sys.stderr,
        )
    return TrainResult(step, losses, train_hist, val_hist, out, interrupted, best_val, notes)


class _StopSignals:
    """SIGTERM (a job scheduler, ``kill``) and SIGINT stop training like Ctrl-C: a checkpoint is
    saved. SIGINT is re-armed too: jobs started with ``&`` by a non-interactive shell inherit it
    ignored. Main thread only; the previous handlers come back afterwards."""

    def __enter__(self) -> None:
        self._old: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return

        def stop(signum: int, frame: object) -> None:
            raise KeyboardInterrupt

        for sig in (signal.SIGTERM, signal.SIGINT):
            if sig == signal.SIGINT and signal.getsignal(sig) is not signal.SIG_IGN:
                continue  # Python's own Ctrl-C handling already raises KeyboardInterrupt
            self._old[sig] = signal.signal(sig, stop)

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _best_step(val_hist: list[list[float]], best: float) -> int:
    for s, v in val_hist:
        if v == best:
            return int(s)
    return -1


# ----------------------------------------------------------------------------- CLI


def add_train_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``train-binaural`` to the livesense sub-commands; run it with :func:`cmd_train`."""
    p = subparsers.add_parser(
        "train-binaural",
        help="train a BinauralFlow model on binaural data (Richard et al. layout)",
        description=(
            "Train BinauralFlow with conditional flow matching (Adam). Reads DIR/train and "
            "DIR/val (validation loss), or DIR itself. Checkpoints go to --out (latest) and "
            "--out/best (best validation loss); Ctrl-C or SIGTERM saves before exiting; --resume continues."
        ),
    )
    p.add_argument("--data", required=True, metavar="DIR", help="dataset folder")
    p.add_argument("--out", required=True, metavar="CKPT_DIR", help="checkpoint folder")
    p.add_argument("--preset", choices=("tiny", "small", "paper"), default=None,
                   help="model size (default small; --resume: the checkpoint's)")  # fmt: skip
    p.add_argument("--steps", type=int, required=True, metavar="N", help="total training steps")
    p.add_argument("--batch", type=int, default=8, metavar="B")
    p.add_argument("--segment-seconds", type=float, default=1.0, metavar="S", help="crop length")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (paper: 1e-4)")
    p.add_argument("--val-every", type=int, default=200, metavar="N")
    p.add_argument("--save-every", type=int, default=500, metavar="N")
    p.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, metavar="N", help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def cmd_train(args: argparse.Namespace) -> int:
    """Run ``train-binaural``; LivesenseErrors propagate (the CLI prints them on one line).

    Returns 0, or 130 after Ctrl-C (the checkpoint is saved)."""
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
        progress=not getattr(args, "no_progress", False) and sys.stderr.isatty(),
        command=" ".join(["livesense", *sys.argv[1:]]),
    )
    res = train(cfg)
    last = res.train_history[-1][1] if res.train_history else float("nan")
    val = f", best val loss {res.best_val:.5f}" if res.best_val is not None else ""
    print(f"step {res.step}: train loss {last:.5f}{val}; checkpoint in {res.out}")
    return 130 if res.interrupted else 0
