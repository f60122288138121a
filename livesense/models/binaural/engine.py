"""The render engine: one BinauralFlow model per process, a fixed table of stream slots, and one
batched network call per tick for every slot that has a block waiting.

The moshi-server pattern: :meth:`RenderEngine.open` takes a free slot (``EngineFull`` when
none is left) and returns its :class:`~.stream.SlotStream`; the stream submits fixed blocks
(:data:`~.renderer.LIVE_BLOCK_FRAMES` STFT frames) and waits for their output; the engine's
thread takes the next block of every slot that has one, renders them in one
:meth:`~.slots.SlotKernel.tick` and hands each its output. Slots with nothing waiting (idle or
late) are simply not in the batch: their state is not touched, and they are never fed silence.
Closing a stream frees its slot. The batch size follows the load by itself: while a tick runs,
the blocks that arrive meanwhile queue for the next one.

Device and precision: the model, every hot-path tensor and the streams' state live on the
engine's device (``cpu``, ``cuda[:N]``); each tick makes one host -> device copy (a pinned
buffer of packed rows) and one copy back. On CUDA the engine thread runs on a high-priority
stream (a VLM on the default stream cannot queue in front of audio), timing uses CUDA events,
and each (NFE, batch bucket) tick is captured as a CUDA graph on first use (eager where
capture fails; :attr:`EngineStats.mode` says which). On the CPU ticks run eagerly at the exact
batch size. An :class:`~.nfe.NfePolicy` lowers the NFE of all slots when ticks fall behind.
"""

from __future__ import annotations

import atexit
import copy
import logging
import math
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.audio.hrtf import HrirSet
from livesense.audio.trajectory import Trajectory
from livesense.errors import LivesenseError
from livesense.models.binaural.kernel_process import KernelProcess
from livesense.models.binaural.nfe import NfePolicy
from livesense.models.binaural.slots import SlotKernel
from livesense.models.binaural.stream import SlotStream
from livesense.models.binaural.unet import BinauralFlowUNet
from livesense.models.devices import bucket_sizes, cuda_timer

__all__ = ["EngineFull", "EngineStats", "RenderEngine"]

log = logging.getLogger(__name__)


class EngineFull(LivesenseError):
    """Every slot of the engine is taken."""


@dataclass
class EngineStats:
    """What the engine did (``ticks`` batched calls rendering ``blocks`` slot-blocks)."""

    device: str
    dtype: str
    capacity: int
    mode: str = "eager"  # "graph" once a tick ran as a captured CUDA graph
    nfe: int = 0
    active: int = 0  # slots open now
    ticks: int = 0
    blocks: int = 0
    last_batch: int = 0
    max_batch: int = 0
    last_tick_ms: float = 0.0  # device time of the last tick (CUDA events on CUDA)
    mean_tick_ms: float = 0.0
    graph_failures: int = 0
    batch_hist: dict[int, int] = field(default_factory=dict)

    @property
    def mean_batch(self) -> float:
        return self.blocks / self.ticks if self.ticks else 0.0

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device, "dtype": self.dtype, "capacity": self.capacity,
            "mode": self.mode, "nfe": self.nfe, "active": self.active, "ticks": self.ticks,
            "blocks": self.blocks, "mean_batch": round(self.mean_batch, 2),
            "max_batch": self.max_batch, "last_tick_ms": round(self.last_tick_ms, 2),
            "mean_tick_ms": round(self.mean_tick_ms, 2),
        }  # fmt: skip


class _Request:
    __slots__ = ("done", "error", "out", "row", "slot", "t")

    def __init__(self, slot: int, row: np.ndarray):
        self.slot, self.row = slot, row
        self.t = time.monotonic()
        self.done = threading.Event()
        self.out: np.ndarray | None = None
        self.error: BaseException | None = None


class RenderEngine:
    """``capacity`` BinauralFlow streams of one model on one device (see module docstring)."""

    def __init__(
        self,
        model: BinauralFlowUNet,
        capacity: int = 8,
        *,
        nfe: int | None = None,
        solver: str | None = None,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        frames: int = 16,
        policy: NfePolicy | None = None,
        hrirs: HrirSet | None = None,
        graphs: bool | None = None,
        gather_ms: float | None = None,
        process: bool = False,
    ):
        dev = torch.device(device)
        p = model.in_conv.conv.weight  # the trunk (a bf16 model keeps float32 conditioning)
        if (p.device, p.dtype) != (dev, dtype):  # the caller's model stays as it is
            model = copy.deepcopy(model).to(device=dev, dtype=dtype)
        model = model.eval()
        model.cond.float()  # pose/time conditioning stays float32 under a bf16/fp16 trunk
        self.model = model
        self.config = model.config
        self.device, self.dtype = dev, dtype
        self.process = bool(process) and dev.type == "cpu"
        self.kernel: SlotKernel | KernelProcess = (
            KernelProcess(model, capacity, frames, solver, torch.get_num_threads())
            if self.process
            else SlotKernel(model, capacity, frames, solver, hrirs)
        )
        self.block, self.frames = self.kernel.block, frames
        self.latency = self.config.latency
        self.capacity = capacity
        self.policy = policy
        self._nfe = self.config.nfe if nfe is None else nfe
        self.kernel.plan(self._nfe)  # validates
        self.kernel.bank(self._nfe)
        for n in policy.levels if policy else ():
            self.kernel.bank(n)
        self.stats = EngineStats(str(dev), str(dtype).removeprefix("torch."), capacity)
        self.stats.nfe = self._nfe
        self._cuda = dev.type == "cuda"
        self._graphs_on = self._cuda if graphs is None else (graphs and self._cuda)
        self._buckets = bucket_sizes(capacity) if self._graphs_on else None
        self._graphs: dict[tuple[int, int], tuple[object, torch.Tensor, torch.Tensor] | None] = {}
        self._pad_row = np.zeros(self.kernel.layout.width)
        self._pad_row[self.kernel.layout.row] = self.kernel.spare
        self._free = list(range(capacity - 1, -1, -1))
        self._queues: dict[int, deque[_Request]] = {}
        self._resets: set[int] = set()
        self._last_submit = [-math.inf] * capacity
        block_s = self.block / self.config.sample_rate
        self._recent_s = 2.0 * block_s  # a slot that submitted this recently is streaming
        # How long the first block of a tick may wait for the other streaming slots' blocks
        # (default a quarter block, 10.7 ms at 42.7 ms): without it, streams arriving at
        # different phases would each get a tick of their own and nothing would batch.
        self._gather_s = 0.25 * block_s if gather_ms is None else gather_ms / 1e3
        self._tick_end = -math.inf
        self.tick_log: deque[tuple[float, int, float, int]] = deque(maxlen=4096)  # t, B, ms, nfe
        self._gen = [0] * capacity  # bumped on open and release: stale streams cannot submit
        self._cond = threading.Condition()
        self._closed = False
        self._failure: BaseException | None = None
        self._stream = None
        self._thread = threading.Thread(target=self._run, name="render-engine", daemon=True)
        self._thread.start()
        # A thread that ran torch still alive at interpreter exit aborts the process
        # ("terminate called without an active exception"): stop it first, whatever path
        # the program leaves by.
        atexit.register(_close_at_exit, weakref.ref(self))

    # ------------------------------------------------------------------ public API

    @property
    def nfe(self) -> int:
        return self._nfe

    @property
    def free_slots(self) -> int:
        with self._cond:
            return len(self._free)

    def open(
        self,
        speaker: Pose | Trajectory = DEFAULT_SPEAKER,
        listener: Pose | Trajectory = DEFAULT_LISTENER,
        seed: int = 0,
    ) -> SlotStream:
        """A new stream in a free slot (raises :class:`EngineFull` when there is none)."""
        with self._cond:
            self._check_alive()
            if not self._free:
                raise EngineFull(f"all {self.capacity} render slots are in use")
            slot = self._free.pop()
            self._queues[slot] = deque()
            self._gen[slot] += 1
            self.stats.active = self.capacity - len(self._free)
            gen = self._gen[slot]
        self.reset_slot(slot, gen)
        return SlotStream(self, slot, gen, speaker, listener, seed)

    def reset_slot(self, slot: int, gen: int) -> None:
        """Start a fresh stream in ``slot`` (if generation ``gen`` still holds it): the engine
        thread zeroes its state before the next tick (so a reset never races a tick), ahead
        of any block submitted after this call."""
        with self._cond:
            if self._gen[slot] == gen:
                self._resets.add(slot)
                self._cond.notify()

    def release(self, slot: int, gen: int) -> None:
        """Free ``slot`` if stream generation ``gen`` still holds it (queued blocks come back
        silent; a block being rendered finishes)."""
        with self._cond:
            if self._gen[slot] != gen or slot not in self._queues:
                return
            self._gen[slot] += 1  # the closed stream can no longer submit
            for r in self._queues.pop(slot):
                r.out = np.zeros((2, self.block), dtype=np.float32)
                r.done.set()
            self._free.append(slot)
            self.stats.active = self.capacity - len(self._free)

    def submit(self, slot: int, gen: int, row: np.ndarray) -> _Request | None:
        """Queue one packed block of ``slot`` for the next tick it can go in; None when the
        stream generation ``gen`` no longer holds the slot (it was closed)."""
        req = _Request(slot, row)
        with self._cond:
            self._check_alive()
            if self._gen[slot] != gen or slot not in self._queues:
                return None
            self._queues[slot].append(req)
            self._last_submit[slot] = req.t
            self._cond.notify()
        return req

    def wait(self, req: _Request) -> np.ndarray:
        """The ``(2, block)`` output of a submitted block (raises if the engine failed)."""
        while not req.done.wait(0.5):
            with self._cond:
                self._check_alive()
        if req.error is not None:
            raise LivesenseError(f"render engine: {req.error}") from req.error
        assert req.out is not None
        return req.out

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(5.0)
        self.kernel.close()

    def _check_alive(self) -> None:
        if self._failure is not None:
            raise LivesenseError(f"render engine failed: {self._failure}") from self._failure
        if self._closed:
            raise LivesenseError("render engine is closed")

    # ------------------------------------------------------------------ the engine thread

    def _run(self) -> None:
        try:
            if self._cuda:
                torch.cuda.set_device(self.device)
                lo, hi = torch.cuda.Stream.priority_range()
                self._stream = torch.cuda.Stream(self.device, priority=min(lo, hi))
            self._warm_up()
            while True:
                with self._cond:
                    while not (self._closed or self._resets or any(self._queues.values())):
                        self._cond.wait()
                    self._gather()
                    if self._closed:
                        return
                    resets, self._resets = sorted(self._resets), set()
                    batch = [q.popleft() for q in self._queues.values() if q]
                if resets:
                    self.kernel.reset_host(resets)
                if batch:
                    self._tick(batch)
                    self._tick_end = time.monotonic()
        except BaseException as e:  # a model failure ends every stream, clearly
            log.exception("render engine failed")
            with self._cond:
                self._failure = e
                for q in self._queues.values():
                    for r in q:
                        r.error = e
                        r.done.set()

    def _warm_up(self) -> None:
        """One tick per batch size up to 8 on padding rows (the spare row absorbs them): the
        first call of each shape builds its kernels and work space, 10-20 ms on a CPU, which
        live streams should not pay. (On CUDA the graph capture warms its own shapes.)"""
        if self._cuda:
            return
        for b in range(1, min(self.capacity, 8) + 1):
            with self._cond:
                if self._closed or any(self._queues.values()):
                    return  # streams are waiting: serve them, warm nothing more
            self.kernel.tick_host(self._nfe, np.tile(self._pad_row, (b, 1)))

    def _gather(self) -> None:
        """Hold the tick (lock held, waiting releases it) until every streaming slot has a
        block queued or the oldest queued block has waited ``gather_s``."""
        while not self._closed and not self._resets and self._gather_s > 0:
            queued = [q for q in self._queues.values() if q]
            if not queued:
                return
            now = time.monotonic()
            streaming = sum(now - self._last_submit[s] < self._recent_s for s in self._queues)
            # from the later of the oldest block and the last tick's end: blocks that queued
            # during a tick still give the others a moment to join (else streams alternate)
            left = max(min(q[0].t for q in queued), self._tick_end) + self._gather_s - now
            if len(queued) >= streaming or left <= 0:
                return
            self._cond.wait(left)

    def _tick(self, batch: list[_Request]) -> None:
        """Render ``batch`` (one block per slot) in one call, on the engine thread."""
        n = len(batch)
        size = n if self._buckets is None else next(b for b in self._buckets if b >= n)
        host = np.empty((size, self.kernel.layout.width))
        for i, r in enumerate(batch):
            host[i] = r.row
        host[n:] = self._pad_row
        t0 = time.perf_counter()
        try:
            if self._cuda:
                with torch.cuda.stream(self._stream), cuda_timer(self._stream) as timer:
                    y = self._run_cuda(host)
                elapsed_ms = timer.ms
            else:
                y = self.kernel.tick_host(self._nfe, host)
                elapsed_ms = (time.perf_counter() - t0) * 1e3
        except Exception as e:
            with self._cond:  # failed before any waiter wakes: nothing can be submitted after
                self._failure = e
            for r in batch:
                r.error = e
                r.done.set()
            raise
        for i, r in enumerate(batch):
            r.out = y[i]
            r.done.set()
        self._account(n, elapsed_ms)

    def _account(self, n: int, elapsed_ms: float) -> None:
        st = self.stats
        st.ticks += 1
        st.blocks += n
        st.last_batch, st.max_batch = n, max(st.max_batch, n)
        st.batch_hist[n] = st.batch_hist.get(n, 0) + 1
        st.last_tick_ms = elapsed_ms
        self.tick_log.append((time.monotonic(), n, elapsed_ms, self._nfe))
        st.mean_tick_ms = elapsed_ms if st.ticks == 1 else 0.9 * st.mean_tick_ms + 0.1 * elapsed_ms
        if self.policy is not None:
            block_s = self.block / self.config.sample_rate
            nfe = self.policy.update(self._nfe, elapsed_ms / 1e3, block_s)
            if nfe != self._nfe:
                self.kernel.warm(nfe, self._nfe)
                self._nfe = st.nfe = nfe

    def _run_cuda(self, host: np.ndarray) -> np.ndarray:
        pinned = torch.from_numpy(host).pin_memory()
        key = (self._nfe, host.shape[0])
        if self._graphs_on and key not in self._graphs:
            self._graphs[key] = self._capture(*key)
        graph = self._graphs.get(key)
        if graph is not None:
            g, static_in, static_out = graph
            static_in.copy_(pinned, non_blocking=True)
            g.replay()  # type: ignore[attr-defined]
            out = static_out
            self.stats.mode = "graph"
        else:
            out = self.kernel.tick(self._nfe, pinned.to(self.device, non_blocking=True))
        y = torch.empty(out.shape, dtype=out.dtype, pin_memory=True)
        y.copy_(out, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return y.numpy()

    def _capture(self, nfe: int, size: int) -> tuple[object, torch.Tensor, torch.Tensor] | None:
        """A CUDA graph of the (nfe, size) tick, warmed and captured on padding rows only (the
        spare row absorbs their writes); None (eager from then on) when capture fails."""
        static_in = torch.from_numpy(np.tile(self._pad_row, (size, 1))).to(self.device)
        try:
            for _ in range(2):
                self.kernel.tick(nfe, static_in)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=self._stream, capture_error_mode="thread_local"):
                static_out = self.kernel.tick(nfe, static_in)
            return g, static_in, static_out
        except Exception as e:  # not capturable here: eager is correct, only slower
            log.warning("render engine: CUDA graph capture failed (%s); running eager", e)
            self.stats.graph_failures += 1
            return None


def _close_at_exit(ref: weakref.ref[RenderEngine]) -> None:
    engine = ref()
    if engine is not None:
        engine.close()
