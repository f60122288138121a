"""A dispatch mode that records the device of every tensor an op makes
(``from device_guard import NoCpuTensors``; pyproject puts tests/support on the path).

Run a hot path with its tensors on ``meta`` (or cuda) inside it: any CPU tensor created there
(a factory call without ``device=``, ``torch.tensor(...)``, a ``.cpu()``) shows up in
:attr:`NoCpuTensors.cpu`::

    with NoCpuTensors() as guard:
        out = engine.step(...)
    assert guard.created and guard.cpu == []
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


class NoCpuTensors(TorchDispatchMode):
    """Records ``(op name, device)`` of every tensor output of every op run while active."""

    def __init__(self) -> None:
        super().__init__()
        self.created: list[tuple[str, torch.device]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self.created.append((str(func), t.device))
        return out

    @property
    def cpu(self) -> list[str]:
        """Names of the ops that made a CPU tensor (in order, repeats kept)."""
        return [op for op, dev in self.created if dev.type == "cpu"]
