"""Model engines: one per model per process, built in ``main`` and passed to what needs them.

A **renderer engine** owns what all sessions share (the HRIR set, a neural model's weights)
and creates a :class:`SessionRenderer` (per-session streaming state) for each session. A
**reasoner engine** opens a :class:`ReasonerHandle` per session. :class:`Engines` holds the
engines of one process (renderers by name, built on first use when given as factories, and
the reasoner); ``livesense serve`` builds it in its ``run`` and hands it to the server, tests
build their own. Nothing here is a module-level registry.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.geometry import Pose
from livesense.audio.hrtf import load_hrirs
from livesense.errors import ConfigError, LivesenseError
from livesense.models.binaural import (
    FallbackRenderer,
    NfePolicy,
    RenderEngine,
    SlotStream,
    load_model,
)
from livesense.models.binaural.unet import BinauralFlowUNet
from livesense.models.devices import parse_device
from livesense.models.vlm import load_vlm
from livesense.streaming.frames import PoseUpdate, Question, TextEvent, VideoFrame
from livesense.streaming.processor import PoseTarget, StreamProcessor, to_numpy
from livesense.video.reasoner import ReasonerConfig, ReasonerStats, VideoReasoner

__all__ = [
    "DspEngine",
    "Engines",
    "FakeReasoner",
    "NeuralEngine",
    "NullReasoner",
    "ReasonerEngine",
    "ReasonerHandle",
    "RendererEngine",
    "SessionRenderer",
    "VideoReasonerEngine",
    "reasoner_engine",
]

log = logging.getLogger(__name__)

EventCallback = Callable[[TextEvent], None]


# --------------------------------------------------------------------------- renderers


class SessionRenderer:
    """One session's renderer: mono ``(1, n)`` float32 -> binaural ``(2, m)`` float32, pose
    updates, and how it degrades.

    ``processor`` is the streaming renderer (a :class:`StreamProcessor` that takes pose
    updates); ``fallback`` the :class:`FallbackRenderer` inside it when it can degrade to the
    DSP renderer click-free. ``latency`` (input samples) is what ``step`` holds back; ``flush``
    returns it, so the total output length equals the total input length.
    """

    def __init__(
        self,
        processor: StreamProcessor,
        name: str,
        fallback: FallbackRenderer | None = None,
        stream: SlotStream | None = None,
    ):
        if not isinstance(processor, PoseTarget):
            raise TypeError(f"{type(processor).__name__} takes no pose updates")
        self.processor = processor
        self.name = name
        self.fallback = fallback
        self.stream = stream  # the engine slot this session renders in (neural)
        self.latency = processor.latency
        self.granularity = processor.granularity
        self.degraded = False

    def close(self) -> None:
        """Free what the session holds in a shared engine (its slot); idempotent."""
        if self.stream is not None:
            self.stream.close()

    def engine_stats(self) -> dict[str, object] | None:
        """The shared engine's figures (device, dtype, eager/graph, batch sizes) and this
        session's slot; None for a renderer of its own (DSP)."""
        if self.stream is None:
            return None
        return {"slot": self.stream.slot, **self.stream.engine.stats.to_dict()}

    def step(self, x: np.ndarray) -> np.ndarray | None:
        y = self.processor.step(x)
        return None if y is None else to_numpy(y, np.float32)

    def flush(self) -> np.ndarray | None:
        y = self.processor.flush()
        return None if y is None else to_numpy(y, np.float32)

    def apply_pose(self, update: PoseUpdate) -> None:
        self.processor.apply_pose(update)  # type: ignore[attr-defined]

    def degrade(self) -> bool:
        """Fall back to the DSP renderer (crossfaded) from the next sample; False when there is
        nothing to fall back to (already DSP, or already degraded)."""
        if self.fallback is None or self.degraded:
            return False
        self.fallback.use_dsp(True)
        self.degraded = True
        self.name = "dsp"
        return True


@runtime_checkable
class RendererEngine(Protocol):
    """Creates per-session renderers from state shared by all sessions (thread-safe)."""

    name: str

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer: ...


class DspEngine:
    """The DSP HRTF renderer: one HRIR set (and its partition spectra) shared by all sessions."""

    name = "dsp"

    def __init__(self, hrtf: str | None = None, sample_rate: int = 48000, block: int = 128):
        self.sample_rate = sample_rate
        self.config = DspRendererConfig(sample_rate=sample_rate, block=block)
        self.hrirs = load_hrirs(hrtf, sample_rate)
        # Build the shared partition spectra once, before sessions race for them.
        DspBinauralRenderer(hrirs=self.hrirs, config=self.config)

    def renderer(self, speaker: Pose, listener: Pose) -> DspBinauralRenderer:
        """A DSP renderer over the shared HRIR set (also the neural engine's fallback)."""
        return DspBinauralRenderer(speaker, listener, hrirs=self.hrirs, config=self.config)

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer:
        if sample_rate != self.sample_rate:
            raise ConfigError(f"DSP engine runs at {self.sample_rate} Hz, not {sample_rate}")
        return SessionRenderer(self.renderer(speaker, listener), self.name)


class NeuralEngine:
    """The BinauralFlow renderer: one model and one batched
    :class:`~livesense.models.binaural.RenderEngine` shared by all sessions. Each session
    takes an engine slot (its streaming state on the engine's device), so every session's next
    block is rendered in one batched call per tick; an NFE policy lowers evaluations for all
    slots when ticks fall behind (unless ``nfe`` fixes them), and each session keeps its
    click-free fallback to the DSP renderer (:meth:`SessionRenderer.degrade`). When every slot
    is taken a new session gets the DSP renderer.

    ``model`` is used as given; otherwise ``checkpoint`` (a directory or ``model.safetensors``
    saved by the training code) or, with neither, the bundled ``small`` model of the demo room;
    ``random_weights`` (without a checkpoint) builds an untrained ``small`` model instead
    (meaningless audio, for testing). ``capacity`` slots on ``device`` in ``dtype``;
    ``process``: on the CPU, run the network in a child process (what ``serve`` does: a busy
    event loop would otherwise hold up every torch op on the GIL).
    """

    name = "neural"

    def __init__(
        self,
        checkpoint: str | None = None,
        random_weights: bool = False,
        nfe: int | None = None,
        sample_rate: int = 48000,
        model: BinauralFlowUNet | None = None,
        dsp: DspEngine | None = None,
        capacity: int = 8,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        process: bool = False,
    ):
        model = model if model is not None else load_model(checkpoint, random_weights)
        if model.config.sample_rate != sample_rate:
            raise ConfigError(
                f"checkpoint renders {model.config.sample_rate} Hz, the session needs {sample_rate}"
            )
        self.sample_rate = sample_rate
        self.nfe = nfe
        self.dsp = dsp if dsp is not None else DspEngine(sample_rate=sample_rate)
        policy = NfePolicy() if nfe is None else None
        self.engine = RenderEngine(
            model, capacity, nfe=nfe, device=parse_device(device), dtype=dtype, policy=policy,
            process=process,
        )  # fmt: skip
        self.model, self.config = self.engine.model, self.engine.config
        self.block = self.engine.block

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer:
        if sample_rate != self.sample_rate:
            raise ConfigError(f"neural engine runs at {self.sample_rate} Hz, not {sample_rate}")
        try:
            stream = self.engine.open(speaker, listener)
        except LivesenseError as e:  # EngineFull, or an engine that failed
            log.warning("neural renderer: %s; this session gets the DSP renderer", e)
            return self.dsp.create(speaker, listener, sample_rate)
        fallback = FallbackRenderer(stream, self.dsp.renderer(speaker, listener))
        return SessionRenderer(fallback, self.name, fallback, stream)

    def close(self) -> None:
        self.engine.close()


# --------------------------------------------------------------------------- reasoners


@runtime_checkable
class ReasonerHandle(Protocol):
    """One session's reasoner. Calls never block for long; events go to ``on_event``."""

    @property
    def evaluations(self) -> int:
        """Notes and answers the model wrote so far."""

    @property
    def stopped(self) -> bool:
        """Whether the reasoner stopped on its own (a worker failed) before ``close``."""

    def submit_frame(self, frame: VideoFrame) -> bool: ...

    def ask(self, question: Question) -> None: ...

    def close(self) -> None: ...


class ReasonerEngine(Protocol):
    """Opens a per-session :class:`ReasonerHandle` (model weights shared by all sessions)."""

    name: str

    def open_session(self, on_event: EventCallback) -> ReasonerHandle: ...


class _NullHandle:
    evaluations = 0
    stopped = False

    def __init__(self, on_event: EventCallback):
        self._on_event = on_event

    def submit_frame(self, frame: VideoFrame) -> bool:
        return True

    def ask(self, question: Question) -> None:
        self._on_event(
            TextEvent("answer", "(no video reasoner on this server)", question.pts,
                      question.pts, id=question.id, question=question.text)
        )  # fmt: skip

    def close(self) -> None:
        pass


class NullReasoner:
    """No model: frames are accepted and ignored; questions get a fixed answer."""

    name = "none"

    def open_session(self, on_event: EventCallback) -> ReasonerHandle:
        return _NullHandle(on_event)


class _FakeHandle:
    def __init__(self, on_event: EventCallback, every: int, delay: float):
        self._on_event = on_event
        self._every = every
        self._delay = delay
        self.frames = 0
        self.evaluations = 0
        self.stopped = False
        self._last_pts = 0.0
        self._lock = threading.Lock()

    def submit_frame(self, frame: VideoFrame) -> bool:
        if self._delay:
            time.sleep(self._delay)  # a deliberately slow model
        with self._lock:
            self.frames += 1
            self._last_pts = frame.pts
            n = self.frames
        if n % self._every == 0:
            self.evaluations += 1
            mean = frame.image.reshape(-1, 3).mean(axis=0)
            colour = ",".join(str(int(round(c))) for c in mean)
            self._on_event(
                TextEvent("note", f"frame {n}: {frame.image.shape[1]}x{frame.image.shape[0]} "
                          f"mean rgb {colour}", frame.pts, frame.pts)
            )  # fmt: skip
        return True

    def ask(self, question: Question) -> None:
        with self._lock:
            n, t = self.frames, self._last_pts
        self.evaluations += 1
        self._on_event(
            TextEvent("answer", f"I have seen {n} frames", t, t, id=question.id,
                      question=question.text)
        )  # fmt: skip

    def close(self) -> None:
        pass


class FakeReasoner:
    """Test/benchmark stand-in: a note every ``every`` frames (mean colour), instant answers;
    ``delay`` seconds of sleep per frame simulates a slow model."""

    name = "fake"

    def __init__(self, every: int = 1, delay: float = 0.0):
        if every <= 0:
            raise ConfigError("FakeReasoner.every must be positive")
        self.every = every
        self.delay = delay

    def open_session(self, on_event: EventCallback) -> ReasonerHandle:
        return _FakeHandle(on_event, self.every, self.delay)


class _VideoReasonerHandle:
    def __init__(self, reasoner: VideoReasoner, finish_timeout: float):
        self._r = reasoner
        self._finish_timeout = finish_timeout

    @property
    def evaluations(self) -> int:
        s: ReasonerStats = self._r.stats()
        return s.notes_emitted + s.answers

    @property
    def stopped(self) -> bool:
        return self._r.stopped

    def submit_frame(self, frame: VideoFrame) -> bool:
        self._check()
        return bool(self._r.submit_frame(frame))

    def ask(self, question: Question) -> None:
        self._check()
        self._r.ask(question)

    def _check(self) -> None:
        if self._r.stopped:
            raise LivesenseError("the video reasoner stopped (a worker failed; see the log)")

    def close(self) -> None:
        try:
            self._r.finish(self._finish_timeout)
        finally:
            self._r.close()


class VideoReasonerEngine:
    """A :class:`~livesense.video.reasoner.VideoReasoner` per session over one shared backend
    (model weights); ``close`` finishes it (pending questions answered, up to
    ``finish_timeout`` s) and stops it."""

    def __init__(
        self,
        make: Callable[[EventCallback], VideoReasoner],
        name: str = "vlm",
        finish_timeout: float = 5.0,
    ):
        self.name = name
        self._make = make
        self._finish_timeout = finish_timeout

    def open_session(self, on_event: EventCallback) -> ReasonerHandle:
        return _VideoReasonerHandle(self._make(on_event), self._finish_timeout)


def reasoner_engine(
    name: str,
    config: ReasonerConfig | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> ReasonerEngine:
    """The reasoner of ``--vlm NAME``: ``none``, ``fake`` (test stand-in) or a transformers VLM
    (``tiny``, a model id or a local folder) loaded once; every session then gets its own
    :class:`VideoReasoner` (its own cache and workers) over the shared weights, on ``device``
    in ``dtype`` (defaults: CUDA when there is one, bf16 there, float32 on the CPU). Raises a
    :class:`~livesense.errors.LivesenseError` with how to get the model if it cannot load."""
    if name == "none":
        return NullReasoner()
    if name == "fake":
        return FakeReasoner()
    backend = load_vlm(name, None if device is None else str(device), dtype)
    cfg = config or ReasonerConfig()

    def make(on_event: EventCallback) -> VideoReasoner:
        return VideoReasoner(backend, cfg, on_event=on_event).start()

    return VideoReasonerEngine(make, name=name)


# --------------------------------------------------------------------------- one process


class Engines:
    """The engines of one process: renderers by name and the video reasoner.

    ``renderers`` maps names to engines or to factories called once, on first use (a factory
    that fails is retried next time: nothing half-built is kept). ``"dsp"`` is always there:
    it is the floor every session can fall back to.
    """

    def __init__(
        self,
        renderers: Mapping[str, RendererEngine | Callable[[], RendererEngine]] | None = None,
        reasoner: ReasonerEngine | None = None,
    ):
        self._lock = threading.Lock()
        self._built: dict[str, RendererEngine] = {}
        self._factories: dict[str, Callable[[], RendererEngine]] = {}
        for name, e in dict(renderers or {}).items():
            if isinstance(e, RendererEngine) and not isinstance(e, type):
                self._built[name] = e
            else:
                self._factories[name] = e  # a class or a function: built on first use
        if "dsp" not in self._built and "dsp" not in self._factories:
            self._built["dsp"] = DspEngine()
        self.reasoner: ReasonerEngine = reasoner if reasoner is not None else NullReasoner()

    @property
    def renderer_names(self) -> list[str]:
        return sorted({*self._built, *self._factories})

    @property
    def dsp(self) -> RendererEngine:
        engine = self.renderer("dsp")
        assert engine is not None
        return engine

    def renderer(self, name: str) -> RendererEngine | None:
        """The engine ``name`` (built on first use), or None when there is none or it cannot
        be built (logged)."""
        with self._lock:
            if name in self._built:
                return self._built[name]
            factory = self._factories.get(name)
            if factory is None:
                return None
            try:
                engine = factory()
            except Exception as e:  # a factory that cannot build its model
                log.warning("renderer %r unavailable: %s", name, e)
                return None
            self._built[name] = engine
            return engine
