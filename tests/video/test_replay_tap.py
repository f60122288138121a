"""Replaying a file's video through the reasoner: the transcript schema, answers at their times."""

from __future__ import annotations

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402

from livesense.models.vlm import load_vlm_from  # noqa: E402
from livesense.models.vlm.tiny import save_tiny  # noqa: E402
from livesense.streaming.frames import Question  # noqa: E402
from livesense.video.questions import compute_accuracy  # noqa: E402
from livesense.video.reasoner import ReasonerConfig  # noqa: E402
from livesense.video.replay_tap import run_reasoner_on_file  # noqa: E402
from livesense.video.transcript import TranscriptWriter  # noqa: E402


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    return load_vlm_from(save_tiny(tmp_path_factory.mktemp("tiny"), "qwen3vl"))


def test_transcript_schema_and_file_replay(backend, make_clip, tmp_path):
    clip = make_clip(seconds=3.0, fps=15, audio=False)
    out = tmp_path / "transcript.jsonl"
    qs = [
        Question("Which colour?", 1.2, "c1", ("A. red", "B. green"), "B"),
        Question("Why?", 9.0, "o1"),
    ]
    with TranscriptWriter(out) as w:
        events, st = run_reasoner_on_file(
            clip,
            backend,
            qs,
            ReasonerConfig(fps=2.0, segment_seconds=1.0, note_tokens=2, answer_tokens=2),
            on_event=w,
        )
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == len(events) > 0
    for d in lines:
        assert d["type"] in ("note", "answer") and isinstance(d["text"], str)
        assert isinstance(d["t0"], float) and d["t1"] >= d["t0"]
        if d["type"] == "answer":
            assert set(d) == {"type", "text", "t0", "t1", "id", "question"}
        else:
            assert set(d) == {"type", "text", "t0", "t1"}
    answers = {d["id"]: d for d in lines if d["type"] == "answer"}
    assert answers["c1"]["t1"] >= 1.2 and answers["o1"]["t1"] == 9.0
    assert st.frames_ingested == 6 and st.segments == 3
    acc = compute_accuracy(qs, events)
    assert acc["questions"] == 1 and acc["answered"] == 1
    assert json.dumps(st.to_json())
