"""Feeds a replayed stream's video frames and scheduled questions to a :class:`VideoReasoner`.

The replay loop calls :meth:`ReasonerTap.on_frame` for every frame it releases (audio and
video, in pts order). Questions are asked as soon as the stream reaches their time, before any
later frame is submitted, so answers only use video up to the question's time. In ``--fast``
replays the tap waits for the reasoner instead of letting frames drop (unless the reasoner has
stopped); in real time frames that arrive while the reasoner is busy are dropped and counted,
as live. :func:`run_reasoner_on_file` replays a file's video through a tap on its own.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path

from livesense.media.video import iter_video_frames
from livesense.models.vlm.base import VlmBackend
from livesense.streaming.clock import PtsPacer
from livesense.streaming.frames import AudioChunk, Question, TextEvent, VideoFrame
from livesense.video.questions import compute_accuracy, write_accuracy
from livesense.video.reasoner import ReasonerConfig, ReasonerStats, VideoReasoner
from livesense.video.transcript import TranscriptWriter

__all__ = ["ReasonerTap", "run_reasoner_on_file"]


class ReasonerTap:
    """Owns a reasoner for one replay; with ``out_dir`` writes ``transcript.jsonl`` (and
    ``accuracy.json`` when the questions carry answers); ``on_event`` sees every event."""

    def __init__(
        self,
        backend: VlmBackend,
        config: ReasonerConfig,
        out_dir: str | Path | None = None,
        questions: Iterable[Question] = (),
        realtime: bool = True,
        on_event: Callable[[TextEvent], None] | None = None,
    ):
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.writer: TranscriptWriter | None = None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.writer = TranscriptWriter(self.out_dir / "transcript.jsonl")
        self.questions = sorted(questions, key=lambda q: q.pts)
        self._pending = deque(self.questions)
        self.realtime = realtime
        self.config = config
        self._on_event = on_event
        self.events: list[TextEvent] = []
        self.reasoner = VideoReasoner(backend, config, on_event=self._event).start()
        self.stats: ReasonerStats | None = None

    def _event(self, event: TextEvent) -> None:
        self.events.append(event)
        if self.writer is not None:
            self.writer.write(event)
        if self._on_event is not None:
            self._on_event(event)

    def on_frame(self, frame: AudioChunk | VideoFrame) -> None:
        t = frame.time
        while self._pending and self._pending[0].pts < t:
            self.reasoner.ask(self._pending.popleft())
        if not isinstance(frame, VideoFrame):
            return
        if not self.realtime:
            r = self.reasoner
            while r.backlog() >= max(1, self.config.frame_queue // 2) and not r.stopped:
                time.sleep(0.002)
        self.reasoner.submit_frame(frame)

    def finish(self, interrupted: bool = False, timeout: float | None = None) -> dict:
        """Answer what is pending (unless interrupted), stop, and write the outputs."""
        try:
            if interrupted:
                self.reasoner.close()
                self.stats = self.reasoner.stats()
            else:
                while self._pending:
                    self.reasoner.ask(self._pending.popleft())
                self.stats = self.reasoner.finish(timeout)
        finally:
            if self.writer is not None:
                self.writer.close()
        outputs = []
        if self.out_dir is not None:
            outputs.append(str(self.out_dir / "transcript.jsonl"))
            if any(q.answer is not None for q in self.questions):
                acc = compute_accuracy(self.questions, self.events)
                write_accuracy(self.out_dir / "accuracy.json", acc)
                outputs.append(str(self.out_dir / "accuracy.json"))
        stats = self.stats.to_json() if self.stats else {}
        backend = self.reasoner.backend
        for key in ("device", "dtype"):  # where the model ran (a stand-in backend may not say)
            if hasattr(backend, key):
                stats[key] = str(getattr(backend, key)).removeprefix("torch.")
        return {"outputs": outputs, "stats": stats}


def run_reasoner_on_file(
    path: str | os.PathLike,
    backend: VlmBackend,
    questions: Iterable[Question] = (),
    config: ReasonerConfig | None = None,
    *,
    on_event: Callable[[TextEvent], None] | None = None,
    progress: Callable[[float], None] | None = None,
    realtime: bool = False,
    max_size: int | None = 512,
    timeout: float | None = None,
) -> tuple[list[TextEvent], ReasonerStats]:
    """Replay a video file through a :class:`ReasonerTap`; questions are asked when the stream
    reaches their time. Offline (``realtime=False``) the replay waits for the reasoner instead
    of dropping frames; ``realtime=True`` paces by pts (frames may drop)."""
    cfg = config or ReasonerConfig()
    tap = ReasonerTap(backend, cfg, None, questions, realtime=realtime, on_event=on_event)
    pacer = PtsPacer(realtime=realtime)
    try:
        for frame in iter_video_frames(path, fps=cfg.fps, max_size=max_size):
            pacer.wait(frame.pts)
            tap.on_frame(frame)
            if progress is not None:
                progress(frame.pts)
        tap.finish(timeout=timeout)
    except BaseException:
        tap.reasoner.close()
        raise
    assert tap.stats is not None
    return list(tap.events), tap.stats
