"""Feeds a replayed stream's video frames and scheduled questions to a :class:`VideoReasoner`.

The replay loop calls :meth:`ReasonerTap.on_frame` for every frame it releases (audio and
video, in pts order). Questions are asked as soon as the stream reaches their time, before any
later frame is submitted, so answers only use video up to the question's time. In ``--fast``
replays the tap waits for the reasoner instead of letting frames drop; in real time frames that
arrive while the reasoner is busy are dropped and counted, as live.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from livesense.models.vlm.base import VlmBackend
from livesense.streaming.frames import AudioChunk, Question, TextEvent, VideoFrame
from livesense.video.questions import compute_accuracy, write_accuracy
from livesense.video.reasoner import ReasonerConfig, ReasonerStats, TranscriptWriter, VideoReasoner


class ReasonerTap:
    """Owns a reasoner for one replay; writes ``transcript.jsonl`` (and ``accuracy.json``)."""

    def __init__(
        self,
        backend: VlmBackend,
        config: ReasonerConfig,
        out_dir: str | Path,
        questions: Iterable[Question] = (),
        realtime: bool = True,
    ):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.questions = sorted(questions, key=lambda q: q.pts)
        self._pending = deque(self.questions)
        self.realtime = realtime
        self.config = config
        self.writer = TranscriptWriter(self.out_dir / "transcript.jsonl")
        self.events: list[TextEvent] = []
        self.reasoner = VideoReasoner(backend, config, on_event=self._on_event).start()
        self.stats: ReasonerStats | None = None

    def _on_event(self, event: TextEvent) -> None:
        self.events.append(event)
        self.writer.write(event)

    def on_frame(self, frame: AudioChunk | VideoFrame) -> None:
        t = frame.time
        while self._pending and self._pending[0].pts < t:
            self.reasoner.ask(self._pending.popleft())
        if not isinstance(frame, VideoFrame):
            return
        if not self.realtime:
            while self.reasoner.backlog() >= max(1, self.config.frame_queue // 2):
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
            self.writer.close()
        outputs = [str(self.out_dir / "transcript.jsonl")]
        if any(q.answer is not None for q in self.questions):
            acc = compute_accuracy(self.questions, self.events)
            write_accuracy(self.out_dir / "accuracy.json", acc)
            outputs.append(str(self.out_dir / "accuracy.json"))
        return {"outputs": outputs, "stats": self.stats.to_json() if self.stats else {}}
