"""Shared model engines: one per process, per-session state created from them.

A **renderer engine** owns what all sessions share (the HRIR set, a neural model's weights)
and creates a :class:`SessionRenderer` (per-session streaming state) for each session. A
**reasoner engine** opens a :class:`ReasonerHandle` per session.

Plugging in other engines (done by the CLI wiring, never at import time)::

    from livesense.live import engines
    engines.register_renderer("neural", lambda: MyNeuralEngine(preset="small"))
    engines.register_reasoner("tiny", lambda: engines.VideoReasonerEngine(make_reasoner))

where ``make_reasoner(on_event)`` returns a started ``livesense.video.reasoner.VideoReasoner``
(anything with ``submit_frame``, ``ask``, ``finish``/``close``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from livesense.audio.geometry import Pose
from livesense.errors import ConfigError
from livesense.streaming.frames import Question, TextEvent, VideoFrame

__all__ = [
    "DspEngine",
    "FakeReasoner",
    "NullReasoner",
    "ReasonerEngine",
    "ReasonerHandle",
    "RendererEngine",
    "SessionRenderer",
    "VideoReasonerEngine",
    "get_reasoner",
    "get_renderer",
    "register_reasoner",
    "register_renderer",
    "renderer_names",
]

EventCallback = Callable[[TextEvent], None]


# --------------------------------------------------------------------------- renderers


@runtime_checkable
class SessionRenderer(Protocol):
    """Per-session streaming renderer: mono (n,) float32 -> (2, m) float32.

    ``latency`` (input samples) is what ``step`` holds back; ``flush`` returns it at the end,
    so the total output length equals the total input length.
    """

    latency: int

    def step(self, x: np.ndarray) -> np.ndarray | None: ...

    def flush(self) -> np.ndarray | None: ...

    def set_speaker_pose(self, pose: Pose, at_sample: int | None = None) -> None: ...

    def set_listener_pose(self, pose: Pose, at_sample: int | None = None) -> None: ...


@runtime_checkable
class RendererEngine(Protocol):
    """Creates per-session renderers from state shared by all sessions (thread-safe)."""

    name: str

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer: ...


class DspEngine:
    """The DSP HRTF renderer: one HRIR set (and its partition spectra) shared by all sessions."""

    name = "dsp"

    def __init__(self, hrtf: str | None = None, sample_rate: int = 48000, block: int = 128):
        from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
        from livesense.audio.hrtf import load_hrirs

        self._cls = DspBinauralRenderer
        self.sample_rate = sample_rate
        self.config = DspRendererConfig(sample_rate=sample_rate, block=block)
        self.hrirs = load_hrirs(hrtf, sample_rate)
        # Build the shared partition spectra once, under a lock, before sessions race for it.
        self._lock = threading.Lock()
        with self._lock:
            self._cls(hrirs=self.hrirs, config=self.config)

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer:
        if sample_rate != self.sample_rate:
            raise ConfigError(f"DSP engine runs at {self.sample_rate} Hz, not {sample_rate}")
        return self._cls(speaker, listener, hrirs=self.hrirs, config=self.config)  # type: ignore[return-value]


class BlockRenderer:
    """Feeds a renderer ``block`` samples at a time (granularity ``block``), holding input
    until a block is complete; ``flush`` renders the rest. Poses pass through."""

    def __init__(self, renderer: Any, block: int):
        self.renderer = renderer
        self.block = block
        self.latency = renderer.latency
        self.granularity = block
        self._buf = np.zeros((1, block), np.float32)  # (1, block) pending input
        self._n = 0

    def step(self, x: np.ndarray) -> np.ndarray | None:
        x = np.asarray(x, np.float32).reshape(1, -1)
        outs = []
        pos = 0
        while pos < x.shape[1]:
            k = min(self.block - self._n, x.shape[1] - pos)
            self._buf[:, self._n : self._n + k] = x[:, pos : pos + k]
            self._n += k
            pos += k
            if self._n == self.block:
                y = self.renderer.step(self._buf.copy())
                self._n = 0
                if y is not None:
                    outs.append(np.asarray(y, np.float32))
        return np.concatenate(outs, axis=1) if outs else None

    def flush(self) -> np.ndarray | None:
        parts = []
        if self._n:
            y = self.renderer.step(self._buf[:, : self._n].copy())
            if y is not None:
                parts.append(np.asarray(y, np.float32))
            self._n = 0
        tail = self.renderer.flush()
        if tail is not None:
            parts.append(np.asarray(tail, np.float32))
        return np.concatenate(parts, axis=1) if parts else None

    def set_speaker_pose(self, pose: Pose, at_sample: int | None = None) -> None:
        self.renderer.set_speaker_pose(pose, at_sample)

    def set_listener_pose(self, pose: Pose, at_sample: int | None = None) -> None:
        self.renderer.set_listener_pose(pose, at_sample)

    @property
    def stats(self) -> Any:
        return getattr(self.renderer, "stats", None)


class NeuralEngine:
    """The BinauralFlow renderer: one model shared by all sessions; each session gets its own
    streaming state (buffer bank) and an NFE policy that lowers evaluations under load.

    ``checkpoint`` is a directory or ``model.safetensors`` saved by the training code (None:
    the bundled ``small`` model of the demo room); ``random_weights`` (without a checkpoint)
    builds an untrained ``small`` model instead (meaningless audio, for testing).
    """

    name = "neural"

    def __init__(
        self,
        checkpoint: str | None = None,
        random_weights: bool = False,
        nfe: int | None = None,
        sample_rate: int = 48000,
    ):
        from livesense.models.binaural import bundled_checkpoint, load_checkpoint, random_model

        if checkpoint:
            self.model, self.config = load_checkpoint(checkpoint)
        elif random_weights:
            self.model = random_model("small")
            self.config = self.model.config
        else:
            self.model, self.config = load_checkpoint(bundled_checkpoint())
        if self.config.sample_rate != sample_rate:
            raise ConfigError(
                f"checkpoint renders {self.config.sample_rate} Hz, the session needs {sample_rate}"
            )
        self.sample_rate = sample_rate
        self.nfe = nfe
        # Network calls over 16 frames at a time: per-call overhead dominates smaller ones on
        # a CPU (RTF 0.47 at 42.7 ms blocks vs 2.3 at 10 ms on 2 cores).
        self.block = 16 * self.config.hop

    def create(self, speaker: Pose, listener: Pose, sample_rate: int) -> SessionRenderer:
        from livesense.models.binaural import NeuralBinauralRenderer, NfePolicy

        if sample_rate != self.sample_rate:
            raise ConfigError(f"neural engine runs at {self.sample_rate} Hz, not {sample_rate}")
        renderer = NeuralBinauralRenderer(
            self.model, speaker=speaker, listener=listener, nfe=self.nfe, policy=NfePolicy()
        )
        return BlockRenderer(renderer, self.block)  # type: ignore[return-value]


_RENDERERS: dict[str, Callable[[], RendererEngine]] = {"dsp": DspEngine}
_RENDERER_CACHE: dict[str, RendererEngine] = {}
_RENDERER_LOCK = threading.Lock()


def register_renderer(name: str, factory: Callable[[], RendererEngine]) -> None:
    """Make renderer ``name`` available; ``factory()`` is called once per process, lazily."""
    with _RENDERER_LOCK:
        _RENDERERS[name] = factory
        _RENDERER_CACHE.pop(name, None)


def renderer_names() -> list[str]:
    return sorted(_RENDERERS)


def get_renderer(name: str) -> RendererEngine | None:
    """The process-wide engine ``name`` (built on first use), or None if not registered.

    A factory that fails raises its error each time it is asked (nothing half-built is kept).
    """
    with _RENDERER_LOCK:
        if name in _RENDERER_CACHE:
            return _RENDERER_CACHE[name]
        factory = _RENDERERS.get(name)
        if factory is None:
            return None
        engine = factory()
        _RENDERER_CACHE[name] = engine
        return engine


# --------------------------------------------------------------------------- reasoners


@runtime_checkable
class ReasonerHandle(Protocol):
    """One session's reasoner. Calls never block for long; events go to ``on_event``."""

    def submit_frame(self, frame: VideoFrame) -> bool: ...

    def ask(self, question: Question) -> None: ...

    def close(self) -> None: ...


class ReasonerEngine(Protocol):
    """Opens a per-session :class:`ReasonerHandle` (model weights shared by all sessions)."""

    name: str

    def open_session(self, on_event: EventCallback) -> ReasonerHandle: ...


class _NullHandle:
    evaluations = 0

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
    def __init__(self, reasoner: Any, finish_timeout: float):
        self._r = reasoner
        self._finish_timeout = finish_timeout

    @property
    def evaluations(self) -> int:
        stats = getattr(self._r, "stats", None)
        if stats is None:
            return 0
        s = stats()
        return int(getattr(s, "notes", 0) or 0) + int(getattr(s, "answers", 0) or 0)

    def submit_frame(self, frame: VideoFrame) -> bool:
        return bool(self._r.submit_frame(frame))

    def ask(self, question: Question) -> None:
        self._r.ask(question)

    def close(self) -> None:
        finish = getattr(self._r, "finish", None)
        try:
            if finish is not None:
                finish(self._finish_timeout)
        finally:
            self._r.close()


class VideoReasonerEngine:
    """Adapter for ``livesense.video.reasoner.VideoReasoner``: ``make(on_event)`` returns a
    started reasoner (sharing one backend/model across sessions); ``close`` finishes it
    (pending questions answered, up to ``finish_timeout`` s) and stops it."""

    def __init__(
        self, make: Callable[[EventCallback], Any], name: str = "vlm", finish_timeout: float = 5.0
    ):
        self.name = name
        self._make = make
        self._finish_timeout = finish_timeout

    def open_session(self, on_event: EventCallback) -> ReasonerHandle:
        return _VideoReasonerHandle(self._make(on_event), self._finish_timeout)


_REASONERS: dict[str, Callable[[], ReasonerEngine]] = {
    "none": NullReasoner,
    "fake": FakeReasoner,
}
_REASONER_CACHE: dict[str, ReasonerEngine] = {}


def _vlm_engine(name: str) -> ReasonerEngine:
    """A transformers VLM (``tiny``, a model id or a local folder) loaded once; every session
    gets its own :class:`~livesense.video.reasoner.VideoReasoner` (its own cache and workers)
    over the shared weights."""
    from livesense.models.vlm import load_vlm
    from livesense.video.reasoner import ReasonerConfig, VideoReasoner

    backend = load_vlm(name)  # LivesenseError with how-to-get-it if it cannot be loaded

    def make(on_event: EventCallback) -> Any:
        return VideoReasoner(backend, ReasonerConfig(), on_event=on_event).start()

    return VideoReasonerEngine(make, name=name)


def register_reasoner(name: str, factory: Callable[[], ReasonerEngine]) -> None:
    """Make ``--vlm name`` available; ``factory()`` is called once per process, lazily."""
    with _RENDERER_LOCK:
        _REASONERS[name] = factory
        _REASONER_CACHE.pop(name, None)


def get_reasoner(name: str) -> ReasonerEngine:
    """The process-wide reasoner engine ``name``: a registered one (``none``, ``fake``) or a
    VLM loaded by :func:`livesense.models.vlm.load_vlm` (error if it cannot be loaded)."""
    with _RENDERER_LOCK:
        if name in _REASONER_CACHE:
            return _REASONER_CACHE[name]
        factory = _REASONERS.get(name)
        engine = factory() if factory is not None else _vlm_engine(name)
        _REASONER_CACHE[name] = engine
        return engine
