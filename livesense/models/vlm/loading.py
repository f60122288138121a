"""Loading a VLM backend by Hugging Face model id, local directory, or ``tiny``.

Real weights load through ``from_pretrained`` from a local folder or the Hugging Face cache;
``tiny`` builds a tiny random model from a config in code (:mod:`.tiny`) and loads it back
through the same path. The backend class is chosen by the config's ``model_type``.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile

import torch

from livesense.errors import LivesenseError
from livesense.models.vlm import tiny as tiny_mod
from livesense.models.vlm.base import VlmBackend
from livesense.models.vlm.qwen3vl import Qwen3VLBackend
from livesense.models.vlm.smolvlm import SmolVLMBackend

log = logging.getLogger(__name__)

__all__ = ["BACKENDS", "load_vlm", "load_vlm_from"]

BACKENDS: dict[str, type[VlmBackend]] = {
    "qwen3_vl": Qwen3VLBackend,
    "smolvlm": SmolVLMBackend,
    "idefics3": SmolVLMBackend,
}

_TINY_WARNING = (
    "*** livesense: using a TINY RANDOM VLM ({arch}) — its notes and answers are meaningless "
    "text; use --vlm MODEL for real output ***"
)


def _device_dtype(device: str | None, dtype: torch.dtype | None) -> tuple[str, torch.dtype]:
    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.bfloat16 if dev.startswith("cuda") else torch.float32
    return dev, dtype


def load_vlm(
    name: str,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    *,
    seed: int = 0,
) -> VlmBackend:
    """Load a VLM backend by Hugging Face model id, local directory, or ``tiny``.

    ``tiny`` / ``tiny-qwen3vl`` / ``tiny-smolvlm`` build a tiny random model (loudly flagged:
    its text is meaningless). Qwen3-VL and SmolVLM/Idefics3 checkpoints are supported. Device:
    CUDA if available else CPU; dtype bf16 on CUDA, float32 on CPU. Raises LivesenseError with
    a one-line fix when the model is not available locally.
    """
    if name == "tiny" or name.startswith("tiny-"):
        arch = "qwen3vl" if name == "tiny" else name.removeprefix("tiny-")
        if arch not in tiny_mod.TINY_ARCHS:
            raise LivesenseError(
                f"unknown tiny VLM {name!r}; use tiny, "
                + ", ".join(f"tiny-{a}" for a in tiny_mod.TINY_ARCHS)
            )
        msg = _TINY_WARNING.format(arch=arch)
        log.info(msg)
        print(msg, file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="livesense-tiny-") as d:
            tiny_mod.save_tiny(d, arch, seed)
            backend = load_vlm_from(d, device, dtype, name=name)
        backend.tiny = True
        return backend
    return load_vlm_from(name, device, dtype, name=name)


def load_vlm_from(
    path: str | os.PathLike,
    device: str | None = None,
    dtype: torch.dtype | None = None,
    name: str | None = None,
) -> VlmBackend:
    """``from_pretrained`` for a model id or directory; picks the backend by ``model_type``."""
    # lazy: transformers takes ~1.5 s to import and only --vlm needs it
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoTokenizer

    src = os.fspath(path)
    name = name or src
    hint = (
        f"cannot load VLM {name!r}: not found locally and it cannot be downloaded here; "
        f"run `huggingface-cli download {name}` on a machine with network, or pass a local "
        "model directory (or use --vlm tiny)"
    )
    dev, dt = _device_dtype(device, dtype)
    try:
        cfg = AutoConfig.from_pretrained(src)
    except (OSError, ValueError) as e:
        raise LivesenseError(hint) from e
    mtype = getattr(cfg, "model_type", "")
    cls = BACKENDS.get(mtype)
    if cls is None:
        raise LivesenseError(
            f"VLM {name!r} has model_type {mtype!r}; supported: qwen3_vl, smolvlm, idefics3"
        )
    try:
        tok = AutoTokenizer.from_pretrained(src)
        model = AutoModelForImageTextToText.from_pretrained(
            src, dtype=dt, attn_implementation="sdpa"
        )
    except OSError as e:
        raise LivesenseError(hint) from e
    model.to(dev)
    return cls(model, tok, name=name, source=src)
