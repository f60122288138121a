"""BinauralFlow models from configs: checkpoints (a directory with ``model.safetensors`` +
``config.json``), the bundled checkpoint, and seeded random initialisations.

``config.json`` holds ``{"format": "livesense.binauralflow", "version": 1, "config": {...},
"extra": {...}}`` (``extra``: caller metadata such as training steps or data). Models never read
files themselves; this module is the only place that does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = [
    "BUNDLED_CHECKPOINT",
    "CONFIG_NAME",
    "FORMAT",
    "WEIGHTS_NAME",
    "bundled_checkpoint",
    "load_checkpoint",
    "load_model",
    "random_model",
    "save_checkpoint",
]

# The shipped ``small`` model of the demo room (trained on synthetic data; see the README).
BUNDLED_CHECKPOINT = Path(__file__).resolve().parents[2] / "assets" / "binauralflow_small"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "livesense.binauralflow"
VERSION = 1


def save_checkpoint(
    directory: str | Path,
    model: BinauralFlowUNet,
    config: BinauralFlowConfig | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory`` (created); return it."""
    cfg = config or model.config
    if cfg != model.config:
        raise ConfigError("save_checkpoint: config differs from the model's config")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(tensors, str(d / WEIGHTS_NAME), metadata={"format": FORMAT})
    meta = {"format": FORMAT, "version": VERSION, "config": cfg.to_dict(), "extra": extra or {}}
    (d / CONFIG_NAME).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return d


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[BinauralFlowUNet, BinauralFlowConfig]:
    """Load a checkpoint directory (or its ``model.safetensors``) -> (model in eval mode, config).

    Raises :class:`ConfigError` for a missing/invalid path or config and :class:`LivesenseError`
    when the weights do not match the config."""
    p = Path(path)
    if p.is_dir():
        d, weights = p, p / WEIGHTS_NAME
    elif p.suffix == ".safetensors":
        d, weights = p.parent, p
    elif p.exists():
        raise ConfigError(
            f"not a BinauralFlow checkpoint (expected a directory or .safetensors): {p}"
        )
    else:
        raise ConfigError(f"checkpoint not found: {p}")
    if not weights.is_file():
        raise ConfigError(f"checkpoint weights not found: {weights}")
    cfg_path = d / CONFIG_NAME
    if not cfg_path.is_file():
        raise ConfigError(
            f"checkpoint config not found: {cfg_path} (expected next to {weights.name})"
        )
    try:
        meta = json.loads(cfg_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read checkpoint config {cfg_path}: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "config" not in meta:
        raise ConfigError(f"{cfg_path} is not a {FORMAT} config")
    if meta.get("version") != VERSION:
        raise ConfigError(f"{cfg_path}: unsupported checkpoint version {meta.get('version')!r}")
    try:
        cfg = BinauralFlowConfig.from_dict(meta["config"])
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"invalid config in {cfg_path}: {e}") from None
    try:
        tensors = load_file(str(weights), device=str(device))
    except (SafetensorError, OSError) as e:
        raise LivesenseError(f"cannot read checkpoint weights {weights}: {e}") from None
    model = BinauralFlowUNet(cfg)
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    bad = sorted(k for k in set(own) & set(tensors) if own[k].shape != tensors[k].shape)
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if bad:
            k = bad[0]
            parts.append(
                f"{len(bad)} with wrong shape (e.g. {k}: {tuple(tensors[k].shape)} "
                f"vs {tuple(own[k].shape)})"
            )
        raise LivesenseError(
            f"checkpoint {weights} does not match its config ({cfg.name}): tensors "
            + "; ".join(parts)
        )
    model.load_state_dict(tensors)
    return model.to(device).eval(), cfg


def bundled_checkpoint() -> Path:
    """The shipped checkpoint's folder; a clear error if the installation lacks it."""
    if not (BUNDLED_CHECKPOINT / WEIGHTS_NAME).is_file():
        raise LivesenseError(
            f"the bundled BinauralFlow checkpoint is missing ({BUNDLED_CHECKPOINT}); "
            "reinstall livesense, pass --checkpoint DIR, or use --renderer dsp"
        )
    return BUNDLED_CHECKPOINT


def random_model(preset: str | BinauralFlowConfig = "small", seed: int = 0) -> BinauralFlowUNet:
    """A seeded, randomly initialised model (global RNG state untouched)."""
    cfg = preset if isinstance(preset, BinauralFlowConfig) else BinauralFlowConfig.preset(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BinauralFlowUNet(cfg)
    return model.eval()


def load_model(
    checkpoint: str | Path | None = None, random_weights: bool = False
) -> BinauralFlowUNet:
    """The model a command renders with: ``checkpoint`` when given, else an untrained ``small``
    model with ``random_weights`` (meaningless audio, for testing), else the bundled one."""
    if checkpoint:
        return load_checkpoint(checkpoint)[0]
    if random_weights:
        return random_model("small")
    return load_checkpoint(bundled_checkpoint())[0]
