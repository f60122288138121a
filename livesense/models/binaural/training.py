"""Training loop for BinauralFlow (``livesense train-binaural``).

Data (:mod:`.batches`): ``DIR/train`` (and ``DIR/val`` for a validation loss) in the Richard
et al. layout, or ``DIR`` itself (no validation). Each step draws ``batch`` random crops of
``segment_seconds`` (reproducible from ``(seed, step)``, so a resumed run draws what an
uninterrupted one would), with per-frame poses at each STFT frame's newest sample, as the
streaming renderer uses them.

Validation: the flow-matching L1 on fixed crops (consecutive segments spread over ``DIR/val``)
with a fixed noise seed, so values are comparable over a run and across resumes.

Checkpoints (``--out CKPT_DIR``): ``model.safetensors`` + ``config.json`` (via
:func:`save_checkpoint`, ``extra`` = step, loss histories, data, elapsed seconds, command line),
``optimizer.pt`` (Adam state + step); the best validation checkpoint in ``CKPT_DIR/best/``.
``--steps`` is the total step count: ``--resume --steps 2000`` after 1000 steps trains 1000 more.
A ``stop()`` that turns true (the CLI's Ctrl-C / SIGTERM handler) or a KeyboardInterrupt ends
the run after the current step with a checkpoint saved.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from livesense.audio.dataset import BinauralDataset
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural.batches import (
    DspRenders,
    find_splits,
    make_batch,
    segment_samples,
    validation_batches,
)
from livesense.models.binaural.checkpoint import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    load_checkpoint,
    random_model,
    save_checkpoint,
)
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.flow import (
    FlowBatch,
    batch_features,
    flow_matching_loss,
    noise_seed,
    train_step,
)
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = [
    "OPTIMIZER_NAME",
    "TrainConfig",
    "TrainResult",
    "train",
    "validation_loss",
]

OPTIMIZER_NAME = "optimizer.pt"
BEST_DIR = "best"
VAL_NOISE_SEED = 20250613


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
    if not _has_checkpoint(out):
        raise LivesenseError(f"--resume: no checkpoint in {out} (model.safetensors + config.json)")
    if not (out / OPTIMIZER_NAME).is_file():
        raise LivesenseError(f"--resume: {out / OPTIMIZER_NAME} is missing (optimizer state)")
    model, _ = load_checkpoint(out, device)
    extra = json.loads((out / CONFIG_NAME).read_text()).get("extra", {})
    try:
        state = torch.load(out / OPTIMIZER_NAME, map_location=device, weights_only=True)
    except Exception:  # noqa: BLE001 - any unreadable file is a user-facing error
        # Not torch's message: it advises unpickling untrusted files (weights_only=False).
        raise LivesenseError(
            f"--resume: {out / OPTIMIZER_NAME} is not an optimizer state saved by train-binaural "
            "(corrupt, or written by another program)"
        ) from None
    return model, extra, state


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


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def train(
    cfg: TrainConfig,
    on_step: Callable[[int, float], None] | None = None,
    log: Callable[[str], None] = _stderr,
    stop: Callable[[], bool] | None = None,
) -> TrainResult:
    """Train (or resume) until ``cfg.steps`` total steps; see the module docstring.

    ``on_step(step, loss)`` runs after every step (a progress bar; tests simulate Ctrl-C with
    it); ``log`` gets the validation lines and notes; ``stop()`` is checked between steps."""
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

    seg = segment_samples(cfg.segment_seconds, mcfg)
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

    def validate() -> None:
        nonlocal best_val
        train_part = "" if smooth is None else f"train loss {smooth:.5f}"
        if not val_sets or (val_hist and int(val_hist[-1][0]) == step):
            if train_part:
                log(f"step {step}: {train_part}")
            return
        v = validation_loss(model, val_sets, device)
        val_hist.append([step, v])
        better = best_val is None or v < best_val
        if better:
            best_val = v
            _save(out / BEST_DIR, model, None, step, extra_now())
        parts = [p for p in (train_part, f"val loss {v:.5f}{' (best)' if better else ''}") if p]
        log(f"step {step}: " + ", ".join(parts))

    for n in notes:
        log(f"note: {n}")
    if step >= cfg.steps:
        log(f"already at step {step} >= --steps {cfg.steps}: nothing to do")
        return TrainResult(step, [], train_hist, val_hist, out, False, best_val, notes)

    interrupted = False
    try:
        if step == 0:
            validate()  # the untrained baseline
        while step < cfg.steps:
            if stop is not None and stop():
                interrupted = True
                break
            rng = np.random.default_rng([cfg.seed, step])
            train_ds.set_epoch(step)
            idx = [int(i) for i in rng.integers(len(train_ds), size=cfg.batch)]
            batch = make_batch(train_ds, idx, mcfg, train_dsp).to(device)
            gen = torch.Generator().manual_seed(noise_seed(cfg.seed, step))
            loss = train_step(model, opt, batch, gen)
            step += 1
            losses.append(loss)
            pending.append(loss)
            smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
            if len(pending) >= cfg.log_every:
                train_hist.append([step, float(np.mean(pending))])
                pending = []
            if on_step is not None:
                on_step(step, loss)
            if step % cfg.val_every == 0 or step == cfg.steps:
                validate()
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
        log(f"interrupted at step {step}: checkpoint saved to {out} (continue with --resume)")
    return TrainResult(step, losses, train_hist, val_hist, out, interrupted, best_val, notes)


def _best_step(val_hist: list[list[float]], best: float) -> int:
    for s, v in val_hist:
        if v == best:
            return int(s)
    return -1
