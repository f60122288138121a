"""Devices and precisions of the models: ``--device auto|cpu|cuda[:N]`` and
``--dtype float32|bfloat16|float16`` parsed once, with clear errors.

``auto`` is the first CUDA device when there is one, else the CPU. Every dtype also runs on
the CPU (bfloat16 halves a model's memory there; float16 convolutions are slow on a CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from livesense.errors import ConfigError

__all__ = [
    "DEVICE_CHOICES",
    "DTYPES",
    "CudaTimer",
    "bucket_sizes",
    "cuda_timer",
    "parse_dtype",
    "parse_device",
]

DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


def parse_device(name: str | torch.device | None = "auto") -> torch.device:
    """The torch device of ``--device NAME`` (raises :class:`ConfigError` with what exists)."""
    if isinstance(name, torch.device):
        return name
    text = (name or "auto").strip().lower()
    if text == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or text.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {name}: no CUDA device here (torch {torch.__version__}, "
                f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto"
            )
        dev = torch.device(text)
        n = torch.cuda.device_count()
        if dev.index is not None and dev.index >= n:
            raise ConfigError(f"--device {name}: there are {n} CUDA device(s), 0..{n - 1}")
        return dev
    if text == "meta":
        return torch.device("meta")  # tests: shapes and devices without memory
    raise ConfigError(f"--device {name!r}: choose {DEVICE_CHOICES}")


def parse_dtype(name: str | torch.dtype | None) -> torch.dtype:
    """The torch dtype of ``--dtype NAME`` (float32, bfloat16 or float16)."""
    if isinstance(name, torch.dtype):
        if name not in DTYPES.values():
            raise ConfigError(f"dtype {name} is not one of {', '.join(DTYPES)}")
        return name
    key = (name or "float32").strip().lower()
    aliases = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}
    key = aliases.get(key, key)
    if key not in DTYPES:
        raise ConfigError(f"--dtype {name!r}: choose {', '.join(DTYPES)}")
    return DTYPES[key]


def bucket_sizes(capacity: int) -> list[int]:
    """Batch sizes a fixed-shape (graph-captured) tick is padded to: powers of two below
    ``capacity``, then ``capacity``."""
    out, b = [], 1
    while b < capacity:
        out.append(b)
        b *= 2
    return [*out, capacity]


class CudaTimer:
    """Elapsed device time between two CUDA events (``ms`` once the block exited)."""

    ms: float = 0.0


@contextlib.contextmanager
def cuda_timer(stream: torch.cuda.Stream | None) -> Iterator[CudaTimer]:
    """Time the enclosed work on ``stream`` with CUDA events (synchronises at exit)."""
    timer = CudaTimer()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    start.record(stream)
    yield timer
    end.record(stream)
    end.synchronize()
    timer.ms = start.elapsed_time(end)
