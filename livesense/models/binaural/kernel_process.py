"""The slot kernel in a child process: the CPU server's network calls, away from its GIL.

Each torch op releases and retakes the GIL. In a server process whose event loop and audio
workers keep the GIL busy, retaking it costs up to a switch interval per op: measured here, a
31 ms tick of 4 slots took 192 ms next to one busy Python thread (2 torch threads), and 7.4 s
with 1 torch thread. :class:`KernelProcess` runs the same :class:`~.slots.SlotKernel` in a
spawned process with its own interpreter; the engine thread sends it each tick's packed rows
over a pipe (one ``(B, width)`` float64 array, tens of kB) and gets the ``(B, 2, block)``
output back. It offers the kernel's host-side interface (``tick_host``, ``reset_host``,
``bank``, ``warm``, ``layout``). A failure in the child (or its death) is raised in the parent
as a :class:`~livesense.errors.LivesenseError`.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import torch

from livesense.errors import LivesenseError
from livesense.models.binaural.config import BinauralFlowConfig
from livesense.models.binaural.slots import RowLayout, SlotKernel
from livesense.models.binaural.solvers import make_plan
from livesense.models.binaural.unet import BinauralFlowUNet

__all__ = ["KernelProcess"]


def _child(
    conn: Connection,
    config: dict[str, Any],
    state: dict[str, torch.Tensor],
    capacity: int,
    frames: int,
    solver: str | None,
    threads: int,
) -> None:
    torch.set_num_threads(threads)
    try:
        model = BinauralFlowUNet(BinauralFlowConfig.from_dict(config))
        model.load_state_dict(state)
        model.eval().requires_grad_(False)
        kernel = SlotKernel(model, capacity, frames, solver)
        conn.send(("ready", None))
    except Exception as e:  # reported to the parent, which raises it
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent went away
            return
        op = msg[0]
        try:
            if op == "tick":
                conn.send(("ok", kernel.tick_host(msg[1], msg[2])))
            elif op == "reset":
                kernel.reset_host(msg[1])
            elif op == "bank":
                kernel.bank(msg[1])
            elif op == "warm":
                kernel.warm(msg[1], msg[2])
            elif op == "close":
                return
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


class KernelProcess:
    """A :class:`~.slots.SlotKernel` of ``model`` (CPU) running in a spawned child process."""

    def __init__(
        self,
        model: BinauralFlowUNet,
        capacity: int,
        frames: int = 16,
        solver: str | None = None,
        threads: int | None = None,
    ):
        cfg = model.config
        self.config = cfg
        self.capacity, self.spare, self.frames = capacity, capacity, frames
        self.block = frames * cfg.hop
        self.has_dsp = cfg.prior == "dsp"
        self.layout = RowLayout(self.block, frames, self.block // cfg.hop)
        self.solver = solver or cfg.solver
        n = threads or max(1, min(4, (os.cpu_count() or 1) - 1))
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        ctx = mp.get_context("spawn")  # fork is unsafe with the parent's threads
        self._conn, child = ctx.Pipe()
        args = (child, cfg.to_dict(), state, capacity, frames, solver, n)
        self._proc = ctx.Process(target=_child, args=args, name="render-kernel", daemon=True)
        self._proc.start()
        child.close()
        self._expect("ready")
        self._closed = False

    def _expect(self, kind: str) -> Any:
        try:
            got, payload = self._conn.recv()
        except (EOFError, OSError):
            raise LivesenseError(
                f"the render kernel process died (exit code {self._proc.exitcode})"
            ) from None
        if got == "error":
            raise LivesenseError(f"render kernel process: {payload}")
        assert got == kind, (got, kind)
        return payload

    def _send(self, *msg: Any) -> None:
        try:
            self._conn.send(msg)
        except (BrokenPipeError, OSError):
            raise LivesenseError(
                f"the render kernel process died (exit code {self._proc.exitcode})"
            ) from None

    def plan(self, nfe: int) -> object:
        return make_plan(nfe, self.solver, self.config.schedule_steps, self.config.t0)

    def bank(self, nfe: int) -> None:
        self.plan(nfe)
        self._send("bank", nfe)

    def warm(self, nfe: int, src: int) -> None:
        self._send("warm", nfe, src)

    def reset_host(self, rows: list[int]) -> None:
        self._send("reset", list(rows))

    def tick_host(self, nfe: int, host: np.ndarray) -> np.ndarray:
        self._send("tick", nfe, host)
        return self._expect("ok")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(BrokenPipeError, OSError):
            self._conn.send(("close",))
        self._proc.join(5.0)
        if self._proc.is_alive():
            self._proc.kill()
        self._conn.close()
