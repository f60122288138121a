"""The engine's hot path lives on its device: the whole tick runs on ``meta`` without creating
one CPU tensor (a CPU tensor in the tick would be a host round trip per tick on a GPU, and would
break CUDA graph capture); device and dtype options fail clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from device_guard import NoCpuTensors

from livesense.errors import ConfigError
from livesense.models.binaural.checkpoint import random_model
from livesense.models.binaural.slots import SlotKernel
from livesense.models.devices import bucket_sizes, parse_device, parse_dtype


def _packed(kernel: SlotKernel, rows: list[int]) -> torch.Tensor:
    lay = kernel.layout
    host = np.zeros((len(rows), lay.width))
    for i, r in enumerate(rows):
        poses = np.tile([1.5, 0.5, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1], (kernel.frames, 1))
        dsp = np.tile(poses[0], (lay.dsp_blocks + 1, 1))
        audio = np.random.default_rng(r).standard_normal(lay.block) * 0.1
        lay.pack(host[i], audio, poses, dsp, r, 16 * i, 7 + r, lay.block)
    return torch.from_numpy(host)


@pytest.mark.parametrize("preset", ["small", "tiny"])  # a "dsp" prior and a "mono" one
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_the_tick_on_meta_creates_no_cpu_tensor(preset, dtype):
    model = random_model(preset, 0).to(device="meta", dtype=dtype)
    model.cond.float()
    kernel = SlotKernel(model, capacity=4)
    packed = _packed(kernel, [2, 0, kernel.spare]).to("meta")
    kernel.bank(2)
    kernel.bank(1)
    with NoCpuTensors() as guard:
        y = kernel.tick(2, packed)
        kernel.warm(1, 2)
        kernel.reset_rows(torch.tensor([1], device="meta"))
    assert y.device.type == "meta" and y.shape == (3, 2, kernel.block) and y.dtype == torch.float32
    assert len(guard.created) > 100  # the guard saw the tick
    assert guard.cpu == []


def test_the_guard_catches_a_cpu_tensor_in_the_tick(monkeypatch):
    """The test above can fail: a hot-path tensor made without ``device=`` is reported."""
    import livesense.models.binaural.slots as slots

    real = slots.frame_noise

    def leaky(seeds, frames, n_bins):
        torch.zeros(3)  # the kind of mistake the issue found (made on the CPU)
        return real(seeds, frames, n_bins)

    monkeypatch.setattr(slots, "frame_noise", leaky)
    model = random_model("tiny", 0).to("meta")
    kernel = SlotKernel(model, capacity=2)
    with NoCpuTensors() as guard:
        kernel.tick(2, _packed(kernel, [0]).to("meta"))
    assert "aten.zeros.default" in guard.cpu


def test_device_and_dtype_parsing():
    assert parse_device("cpu") == torch.device("cpu")
    assert parse_device("AUTO").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert parse_dtype("bf16") is torch.bfloat16 and parse_dtype(None) is torch.float32
    with pytest.raises(ConfigError, match="choose auto, cpu, cuda or cuda:N"):
        parse_device("tpu")
    with pytest.raises(ConfigError, match="choose float32, bfloat16, float16"):
        parse_dtype("int8")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device here"):
            parse_device("cuda:0")
    assert bucket_sizes(1) == [1] and bucket_sizes(12) == [1, 2, 4, 8, 12]
    assert bucket_sizes(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
