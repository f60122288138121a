"""VideoReasoner: budget on a long stream, causality of answers, concurrency, transcript."""

from __future__ import annotations

import os
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest

from livesense.models.vlm import Kind, load_vlm_from
from livesense.models.vlm.tiny import save_tiny
from livesense.streaming.frames import Question, VideoFrame
from livesense.video.questions import compute_accuracy
from livesense.video.reasoner import ReasonerConfig, VideoReasoner

IMG = np.zeros((32, 32, 3), np.uint8)


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return load_vlm_from(save_tiny(tmp_path_factory.mktemp("tiny"), "qwen3vl"))


def _frame(t: float, img: np.ndarray = IMG) -> VideoFrame:
    return VideoFrame(img, t, int(t))


def test_thirty_minute_stream_stays_in_budget_and_keeps_notes(backend):
    cfg = ReasonerConfig(
        fps=1.0,
        segment_seconds=10,
        keep_segments=2,
        max_cache_tokens=7000,
        note_tokens=2,
        query_reserve=64,
        frame_queue=4096,
        feature_queue=4096,
        encode_batch=32,
    )
    r = VideoReasoner(backend, cfg).start()
    for i in range(30 * 60):
        assert r.submit_frame(_frame(float(i)))
    st = r.finish(timeout=120)
    assert st.frames_ingested == 1800 and st.frames_dropped == 0
    assert st.segments == 180 == len(r.memory.notes)
    assert st.peak_cache_tokens <= cfg.max_cache_tokens
    assert st.evicted_tokens > 0 and st.evicted_notes == 0
    cache = r.cache
    assert all(n.in_cache for n in r.memory.notes)
    assert cache.count(Kind.NOTE) == sum(n.n_tokens for n in r.memory.notes)
    assert cache.count(Kind.SYSTEM) > 0 and cache.count(Kind.QUERY) == 0
    assert set(cache.segments[cache.kinds == Kind.VIDEO].tolist()) <= {178, 179}
    assert np.all(np.diff(cache.positions) >= 0)  # positions keep increasing (frames share t)
    assert cache.next_pos > cache.positions.max()
    assert r.memory.notes[-1].t1 == 1799.0 and r.memory.notes[3].t0 == 30.0
    spans = [n.span for n in r.memory.notes]
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))


def test_answers_only_use_frames_up_to_question_time(backend):
    cfg = ReasonerConfig(fps=None, segment_seconds=4, note_tokens=2, answer_tokens=3)
    r = VideoReasoner(backend, cfg).start()
    white = np.full((32, 32, 3), 255, np.uint8)
    for i in range(6):
        r.submit_frame(_frame(float(i)))
    q = Question("What is on screen?", 5.5, "q1", ("black", "white"), "A")
    r.ask(q)
    r.submit_frame(_frame(6.0, white))  # the distinctive frame, after the question
    for i in range(7, 12):
        r.submit_frame(_frame(float(i)))
    r.ask(Question("And now?", 11.0, "q2"))
    st = r.finish(timeout=60)
    log = list(r.ingest_log)
    a1, a2 = log.index(("answer", "q1")), log.index(("answer", "q2"))
    before1 = [t for kind, t in log[:a1] if kind == "frame"]
    assert before1 == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # 6.0 (white) not yet ingested
    assert ("frame", 6.0) in log[a1:]
    assert max(t for kind, t in log[:a2] if kind == "frame") == 11.0
    answers = [e for e in r.transcript if e.type == "answer"]
    assert [a.id for a in answers] == ["q1", "q2"] and st.answers == 2
    assert answers[0].text in ("A", "B") and answers[0].t1 == 5.5 and answers[1].t1 == 11.0
    assert compute_accuracy([q], answers)["questions"] == 1
    assert len(st.answer_latency_s) == 2 and all(x >= 0 for x in st.first_token_latency_s)


def test_submit_never_blocks_while_thinker_generates(backend):
    cfg = ReasonerConfig(
        fps=None,
        segment_seconds=2,
        note_tokens=4,
        frame_queue=4,
        feature_queue=4,
        encode_batch=2,
    )
    r = VideoReasoner(backend, cfg)
    generating = threading.Event()

    def slow() -> None:  # every LM forward takes 20 ms
        if threading.current_thread().name == "vlm-thinker":
            generating.set()
        time.sleep(0.02)

    r.start()
    backend.forward_hook = slow
    try:
        worst, during = 0.0, 0
        for i in range(150):
            t = time.perf_counter()
            assert r.submit_frame(_frame(i / 30))
            worst = max(worst, time.perf_counter() - t)
            during += generating.is_set()
            time.sleep(0.001)
        st = r.finish(timeout=60)
    finally:
        backend.forward_hook = None
    assert worst < 0.05  # never waits for the model
    assert during > 50  # frames kept coming while the thinker was busy
    assert st.frames_dropped > 0  # full queues dropped the oldest
    assert st.frames_submitted == st.frames_ingested + st.frames_dropped == 150
    ingested = [t for kind, t in r.ingest_log if kind == "frame"]
    assert ingested == sorted(ingested) and ingested[-1] == pytest.approx(149 / 30)


def test_hide_notes_and_comment_threshold(backend):
    cfg = ReasonerConfig(
        fps=2.0,
        segment_seconds=1,
        note_tokens=2,
        hide_notes_from_video=True,
        comment_threshold=1.0,
    )
    r = VideoReasoner(backend, cfg).start()
    for i in range(12):
        r.submit_frame(_frame(i / 4))  # 4 fps in, 2 fps kept
    st = r.finish(timeout=60)
    assert st.frames_submitted == 6 and st.frames_sampled_out == 6
    assert st.segments == 3 and st.notes_emitted == 0  # P(yes) never reaches 1.0
    assert not any(e.type == "note" for e in r.transcript)
    assert backend.hide_notes_from_video
    backend.hide_notes_from_video = False
