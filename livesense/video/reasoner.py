"""The video reasoner: a watcher thread encodes frames, a thinker thread owns the KV cache.

Data flow::

    submit_frame ──> FrameSampler ──> frames FrameRing ──> watcher: encode_frames (vision)
                                                              └──> features FrameRing ──> thinker
    ask(Question) ───────────────────────────────────────────────> pending questions ──> thinker

- ``submit_frame`` never blocks: frames outside the target fps are rejected, and both rings
  drop (and count) their oldest frame when full — e.g. while the thinker is generating.
- The thinker appends frames to one :class:`IncrementalCache` as soon as generation yields,
  closes segments (writes a note, optionally decides to comment), evicts through
  :class:`SegmentMemory`, and answers questions.
- A question at time ``t`` is answered once every submitted frame with ``pts <= t`` has been
  ingested (or dropped), and before any frame with ``pts > t`` is ingested. Answers and probes
  are cropped from the cache afterwards; notes stay.
- Times in events are stream seconds. For an answer ``t1 = max(question time, last ingested
  pts)``; latencies are wall-clock seconds in :class:`ReasonerStats`.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field

import numpy as np

from livesense.buffers.frame_ring import FrameRing
from livesense.models.vlm.base import FrameFeatures, VlmBackend
from livesense.models.vlm.cache import Kind
from livesense.stats import LatencySummary
from livesense.streaming.frames import Question, TextEvent, VideoFrame
from livesense.video.memory import MemoryConfig, SegmentMemory, SegmentNote
from livesense.video.questions import option_letters, strip_letter
from livesense.video.sampler import FrameSampler
from livesense.video.segmenter import Segment, Segmenter

log = logging.getLogger(__name__)

__all__ = [
    "ReasonerConfig",
    "ReasonerStats",
    "VideoReasoner",
]

DEFAULT_SYSTEM = (
    "You are watching a live video stream. After each segment write a short note about what "
    "happened. Answer questions using only what you have seen so far."
)
COMMENT_PROBE = "Did something new and worth commenting on happen? Answer Yes or No."


@dataclass(frozen=True)
class ReasonerConfig:
    """Settings of one :class:`VideoReasoner` (times in stream seconds)."""

    fps: float | None = 1.0  # frames kept per second of stream (None: all submitted frames)
    segment_seconds: float = 10.0
    keep_segments: int = 4  # segments whose frame KV stays in the cache
    max_cache_tokens: int = 8192  # hard cache budget (tokens)
    query_reserve: int = 256  # headroom kept free for a question + answer
    note_tokens: int = 24  # max tokens per note
    answer_tokens: int = 64  # max tokens per open-ended answer
    comment_threshold: float = 0.0  # emit a note event when P(yes) >= this; 0 = always
    hide_notes_from_video: bool = False  # Think While Watching segment-level mask
    frame_queue: int = 64  # frames waiting for the watcher (oldest dropped)
    feature_queue: int = 256  # encoded frames waiting for the thinker (oldest dropped)
    encode_batch: int = 8  # frames per vision-encoder call
    system_prompt: str = DEFAULT_SYSTEM

    def __post_init__(self) -> None:
        if self.fps is not None and not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if not self.segment_seconds > 0:
            raise ValueError(f"segment_seconds must be positive, got {self.segment_seconds}")
        if not 0.0 <= self.comment_threshold <= 1.0:
            raise ValueError(f"comment_threshold must be in [0, 1], got {self.comment_threshold}")
        MemoryConfig(self.keep_segments, self.max_cache_tokens)


@dataclass
class ReasonerStats:
    """Counters and latencies (seconds, wall clock)."""

    frames_submitted: int = 0  # accepted by the sampler and queued
    frames_sampled_out: int = 0  # rejected by the fps sampler
    frames_late: int = 0  # pts went backwards
    frames_dropped: int = 0  # evicted from a full queue (oldest first)
    frames_ingested: int = 0
    segments: int = 0
    notes_emitted: int = 0
    answers: int = 0
    cache_tokens: int = 0
    peak_cache_tokens: int = 0
    cache_bytes: int = 0
    evicted_tokens: int = 0
    evicted_notes: int = 0
    watched_until: float = -math.inf  # pts of the newest ingested frame
    note_latency_s: list[float] = field(default_factory=list)  # segment end -> note
    first_token_latency_s: list[float] = field(default_factory=list)  # question -> first token
    answer_latency_s: list[float] = field(default_factory=list)  # question -> full answer

    def to_json(self) -> dict:
        d = asdict(self)
        for k in ("note_latency_s", "first_token_latency_s", "answer_latency_s"):
            lat = LatencySummary.of(d.pop(k))
            d[k.replace("_s", "_p50_s")] = None if lat is None else lat.p50
            d[k.replace("_s", "_max_s")] = None if lat is None else lat.max
        if not math.isfinite(d["watched_until"]):
            d["watched_until"] = None
        return d


@dataclass
class _Pending:
    question: Question
    asked: float  # wall clock


class VideoReasoner:
    """Watches a stream, keeps segment memory, writes notes and answers questions.

    ``start()``, then ``submit_frame`` / ``ask`` from any thread, events via ``on_event``
    (called on the thinker thread; keep it short) or :meth:`events`; ``finish()`` processes
    everything submitted, answers pending questions and stops.
    """

    def __init__(
        self,
        backend: VlmBackend,
        config: ReasonerConfig | None = None,
        on_event: Callable[[TextEvent], None] | None = None,
    ) -> None:
        self.backend = backend
        self.config = cfg = config or ReasonerConfig()
        self.on_event = on_event
        self.memory = SegmentMemory(MemoryConfig(cfg.keep_segments, cfg.max_cache_tokens))
        self.segmenter = Segmenter(cfg.segment_seconds)
        self.sampler = FrameSampler(cfg.fps)
        self._frames: FrameRing[tuple[VideoFrame, float]] = FrameRing(cfg.frame_queue)
        self._features: FrameRing[tuple[FrameFeatures, float]] = FrameRing(cfg.feature_queue)
        self._pending: list[_Pending] = []
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._events: queue.Queue[TextEvent | None] = queue.Queue()
        self._stats = ReasonerStats()
        self._stop = threading.Event()
        self._finishing = threading.Event()
        self._error: BaseException | None = None
        self._held: tuple[FrameFeatures, float] | None = None
        self._seg_closed_wall = 0.0
        self.ingest_log: deque[tuple[str, float | str]] = deque(maxlen=100_000)
        self.transcript: list[TextEvent] = []
        self.cache = backend.new_cache()
        self._threads: list[threading.Thread] = []
        self._started = False

    # --- public API ---------------------------------------------------------------------------

    def start(self) -> VideoReasoner:
        """Prime the cache with the system prompt and start the watcher and thinker."""
        if self._started:
            return self
        self.backend.hide_notes_from_video = self.config.hide_notes_from_video
        self.backend.append_text(
            self.cache, self.backend.system_text(self.config.system_prompt), Kind.SYSTEM
        )
        self._track_cache()
        self._threads = [
            threading.Thread(
                target=self._run, args=(self._watch,), name="vlm-watcher", daemon=True
            ),
            threading.Thread(
                target=self._run, args=(self._think,), name="vlm-thinker", daemon=True
            ),
        ]
        for t in self._threads:
            t.start()
        self._started = True
        return self

    def submit_frame(self, frame: VideoFrame) -> bool:
        """Queue a frame (never blocks). False if the sampler skipped it or its pts is late."""
        if not self.sampler.accept(frame.pts):
            with self._lock:
                self._stats.frames_sampled_out += 1
            return False
        if not self._frames.push((frame, time.monotonic()), frame.pts):
            with self._lock:
                self._stats.frames_late += 1
            return False
        with self._lock:
            self._stats.frames_submitted += 1
            self._wake.notify_all()
        return True

    def ask(self, question: Question) -> None:
        """Queue a question asked at stream time ``question.pts``."""
        with self._lock:
            self._pending.append(_Pending(question, time.monotonic()))
            self._pending.sort(key=lambda p: p.question.pts)
            self._wake.notify_all()

    def events(self, timeout: float | None = None) -> Iterator[TextEvent]:
        """Events as they come, until the reasoner stops (or ``timeout`` s without one)."""
        while True:
            try:
                ev = self._events.get(timeout=timeout)
            except queue.Empty:
                return
            if ev is None:
                return
            yield ev

    @property
    def stopped(self) -> bool:
        """Whether the reasoner stopped (closed, finished, or a worker failed)."""
        return self._stop.is_set()

    def backlog(self) -> int:
        """Frames submitted but not yet ingested or dropped."""
        with self._lock:
            return self._backlog_locked()

    def finish(self, timeout: float | None = None) -> ReasonerStats:
        """Process every submitted frame and question, write the last note, then stop."""
        self._finishing.set()
        with self._lock:
            self._wake.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for t in self._threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if any(t.is_alive() for t in self._threads):
            log.warning("video reasoner did not finish within %.1f s; stopping", timeout or 0)
        self._stop.set()
        self._frames.close()
        self._features.close()
        self._events.put(None)
        if self._error is not None:
            raise self._error
        return self.stats()

    def close(self) -> None:
        """Stop at once (unprocessed frames and questions are discarded)."""
        self._stop.set()
        self._finishing.set()
        self._frames.close()
        self._features.close()
        with self._lock:
            self._wake.notify_all()
        for t in self._threads:
            t.join(5.0)
        self._events.put(None)

    def stats(self) -> ReasonerStats:
        with self._lock:
            s = ReasonerStats(
                **{k: getattr(self._stats, k) for k in self._stats.__dataclass_fields__}
            )
            s.frames_dropped = self._frames.dropped + self._features.dropped
            s.note_latency_s = list(s.note_latency_s)
            s.first_token_latency_s = list(s.first_token_latency_s)
            s.answer_latency_s = list(s.answer_latency_s)
        s.evicted_tokens = self.memory.evicted_tokens
        s.evicted_notes = self.memory.evicted_notes
        return s

    # --- workers --------------------------------------------------------------------------------

    def _run(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except BaseException as e:  # surfaced by finish()
            log.exception("video reasoner worker failed")
            self._error = e
            self._stop.set()
            self._events.put(None)

    def _watch(self) -> None:
        """Watcher: frames -> vision features, in small batches."""
        while not self._stop.is_set():
            first = self._frames.get(timeout=0.05)
            if first is None:
                if self._finishing.is_set() and len(self._frames) == 0:
                    return
                continue
            batch = [first[0]]  # (frame, submit wall time)
            while len(batch) < self.config.encode_batch:
                nxt = self._frames.pop()
                if nxt is None:
                    break
                batch.append(nxt[0])
            frames = [f for f, _ in batch]
            feats = self.backend.encode_frames([f.image for f in frames], [f.pts for f in frames])
            for feat, (_, wall) in zip(feats, batch, strict=True):
                self._features.push((feat, wall), feat.pts)
            with self._lock:
                self._wake.notify_all()

    def _backlog_locked(self) -> int:
        st = self._stats
        dropped = self._frames.dropped + self._features.dropped
        return st.frames_submitted - dropped - st.frames_ingested

    def _think(self) -> None:
        """Thinker: owns the cache; ingests frames, closes segments, answers questions."""
        while not self._stop.is_set():
            if self._held is None:
                self._held = self._pop_feature()
            with self._lock:
                q = self._pending[0] if self._pending else None
                idle = self._backlog_locked() == 0
            held_pts = self._held[0].pts if self._held is not None else None
            if q is not None and (
                (held_pts is not None and held_pts > q.question.pts) or (held_pts is None and idle)
            ):
                with self._lock:
                    self._pending.pop(0)
                self._answer(q)
                continue
            if self._held is not None:
                self._ingest_available(q.question.pts if q is not None else math.inf)
                continue
            if self._finishing.is_set() and idle and q is None:
                seg = self.segmenter.flush()
                if seg is not None:
                    self._seg_closed_wall = time.monotonic()
                    self._close_segment(seg, final=True)
                return
            with self._lock:
                self._wake.wait(0.05)

    def _pop_feature(self) -> tuple[FrameFeatures, float] | None:
        item = self._features.pop()
        return None if item is None else item[0]

    def _ingest_available(self, limit: float) -> None:
        """Append held + queued features of one segment with pts <= ``limit`` as one chunk."""
        assert self._held is not None
        batch: list[FrameFeatures] = []
        seg = self.segmenter.index(self._held[0].pts)
        while self._held is not None and len(batch) < 32:
            feat, wall = self._held
            if feat.pts > limit or self.segmenter.index(feat.pts) != seg:
                break
            closed = self.segmenter.push(feat.pts)
            if closed is not None:
                self._seg_closed_wall = wall
                self._close_segment(closed)
            batch.append(feat)
            self._held = self._pop_feature()
        if not batch:
            return
        cache, cfg = self.cache, self.config
        incoming = sum(f.n_tokens for f in batch) + 16 * len(batch)
        if len(cache) + incoming > cfg.max_cache_tokens:
            self.memory.evict(cache, seg, incoming)
        self.backend.append_video(cache, batch, seg)
        for f in batch:
            self.ingest_log.append(("frame", f.pts))
        with self._lock:
            self._stats.frames_ingested += len(batch)
            self._stats.watched_until = batch[-1].pts
        self._track_cache()

    def _close_segment(self, seg: Segment, final: bool = False) -> None:
        """Write the note of a closed segment, decide whether to comment, evict."""
        b, cache, cfg = self.backend, self.cache, self.config
        t0 = seg.t0
        t1 = seg.t1 if not final else max(seg.t0, seg.last_pts)
        emit = True
        self.memory.evict(cache, seg.index, cfg.query_reserve)
        if cfg.comment_threshold > 0:
            base = cache.mark()
            logits = b.append_text(cache, b.user_text(COMMENT_PROBE), Kind.QUERY)
            self._track_cache()
            emit = b.yes_prob(logits[-1]) >= cfg.comment_threshold
            cache.rewind(base)
        start = len(cache)
        head = f"{b.assistant_prefix()}[{_clock(t0)}-{_clock(t1)}] "
        logits = b.append_text(cache, head, Kind.NOTE, seg.index)
        toks = b.decode(cache, logits[-1], cfg.note_tokens, Kind.NOTE, seg.index)
        b.append_text(cache, b.end_of_turn() + "\n", Kind.NOTE, seg.index)
        self._track_cache()
        pos = cache.positions[start:]
        text = b.detokenize(toks).strip()
        note = SegmentNote(seg.index, t0, t1, text, (int(pos.min()), int(pos.max()) + 1), len(pos))
        self.memory.add_note(note)
        with self._lock:
            self._stats.segments += 1
            self._stats.note_latency_s.append(time.monotonic() - self._seg_closed_wall)
        if emit:
            with self._lock:
                self._stats.notes_emitted += 1
            self._emit(TextEvent("note", text, t0, t1))
        # Free room for the next segment's frames and a question.
        per_frame = b.tokens_per_frame + 16
        fps = cfg.fps or max(1.0, seg.n_frames / cfg.segment_seconds)
        reserve = cfg.query_reserve + int(per_frame * math.ceil(fps * cfg.segment_seconds))
        self.memory.evict(cache, seg.index + 1, min(reserve, cfg.max_cache_tokens // 2))
        self._track_cache()

    def _answer(self, p: _Pending) -> None:
        """Answer from what is in the cache now; the question and answer are cropped after."""
        b, cache, cfg, q = self.backend, self.cache, self.config, p.question
        self.ingest_log.append(("answer", q.id))
        prompt = q.text
        letters = option_letters(len(q.options))
        if q.options:
            opts = "\n".join(
                f"{a}. {strip_letter(o)}" for a, o in zip(letters, q.options, strict=True)
            )
            prompt = f"{q.text}\n{opts}\nAnswer with the option's letter."
        user = b.user_text(prompt)
        incoming = b.count_tokens(user) + cfg.answer_tokens
        seg = self.segmenter.current.index if self.segmenter.current else 0
        if len(cache) + incoming > cfg.max_cache_tokens:
            self.memory.evict(cache, seg, incoming)
        base = cache.mark()
        logits = b.append_text(cache, user, Kind.QUERY)
        first: list[float] = []
        if q.options:
            scores = b.option_logprobs(cache, logits[-1], letters)
            text = letters[int(np.argmax(scores))]
            first.append(time.monotonic())
        else:
            toks = b.decode(
                cache,
                logits[-1],
                cfg.answer_tokens,
                Kind.QUERY,
                on_token=lambda _t: first.append(time.monotonic()) if not first else None,
            )
            text = b.detokenize(toks).strip()
        self._track_cache()
        cache.rewind(base)
        done = time.monotonic()
        with self._lock:
            self._stats.answers += 1
            self._stats.first_token_latency_s.append((first[0] if first else done) - p.asked)
            self._stats.answer_latency_s.append(done - p.asked)
            watched = self._stats.watched_until
        t1 = max(q.pts, watched)
        self._emit(TextEvent("answer", text, 0.0, t1, id=q.id, question=q.text))

    def _emit(self, ev: TextEvent) -> None:
        self.transcript.append(ev)
        self._events.put(ev)
        if self.on_event is not None:
            self.on_event(ev)

    def _track_cache(self) -> None:
        n = len(self.cache)
        with self._lock:
            self._stats.cache_tokens = n
            self._stats.peak_cache_tokens = max(self._stats.peak_cache_tokens, n)
            self._stats.cache_bytes = self.cache.nbytes()


def _clock(t: float) -> str:
    m, s = divmod(int(t), 60)
    return f"{m:02d}:{s:02d}"
