"""Question files: StreamingBench / OVO-Bench parsing, clear errors, accuracy."""

from __future__ import annotations

import json

import pytest

from livesense.errors import ConfigError
from livesense.streaming.frames import Question, TextEvent
from livesense.video.questions import (
    answer_letter,
    compute_accuracy,
    load_questions,
    parse_timestamp,
    write_accuracy,
)


def _write(tmp_path, data, name="q.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_parse_timestamp():
    assert parse_timestamp("00:01:05") == 65.0
    assert parse_timestamp("01:02:03.5") == 3723.5
    assert parse_timestamp("02:30") == 150.0
    assert parse_timestamp(12) == 12.0
    for bad in ("", "a:b", "1:2:3:4", -1, None, True):
        with pytest.raises(ValueError):
            parse_timestamp(bad)


def test_streamingbench(tmp_path):
    p = _write(
        tmp_path,
        {
            "video_path": "clip.mp4",
            "questions": [
                {
                    "task_type": "Object Recognition",
                    "question": "What colour?",
                    "time_stamp": "00:00:30",
                    "options": ["A. red", "B. blue"],
                    "answer": "B",
                },
                {"question": "Who?", "time_stamp": "00:00:05"},
            ],
        },
    )
    qs = load_questions(p)
    assert qs.video == "clip.mp4"
    assert [q.pts for q in qs.questions] == [5.0, 30.0]  # sorted by time
    q = qs.questions[1]
    assert q.options == ("A. red", "B. blue") and q.answer == "B" and q.text == "What colour?"
    assert qs.questions[0].answer is None and qs.questions[0].id


def test_ovobench_list(tmp_path):
    p = _write(
        tmp_path,
        [
            {
                "id": 7,
                "task": "OCR",
                "video": "v.mp4",
                "realtime": 12.5,
                "question": "Q1?",
                "options": ["x", "y", "z"],
                "gt": 2,
            },
            {"id": "b", "video": "v.mp4", "realtime": "00:00:03", "question": "Q2?"},
        ],
    )
    qs = load_questions(p)
    assert [q.id for q in qs.questions] == ["b", "7"]
    assert qs.questions[1].answer == "C" and qs.questions[1].pts == 12.5
    assert qs.video == "v.mp4"


@pytest.mark.parametrize(
    "data, match",
    [
        ("{not json", "not valid JSON"),
        ({"questions": [{"time_stamp": "00:00:01"}]}, "question 0: missing or empty 'question'"),
        ({"questions": [{"question": "q", "time_stamp": "xx"}]}, "bad 'time_stamp'"),
        ({"questions": [{"question": "q"}]}, "missing 'time_stamp'"),
        ([{"video": "v", "question": "q"}], "missing 'realtime'"),
        ([{"video": "v", "realtime": 1, "question": "q", "options": ["a"], "gt": 5}], "gt"),
        ({"questions": "nope"}, "must be a list"),
        ([{"foo": 1}], "unknown format"),
        ([], "no questions"),
        ([3], "expected a JSON object"),
    ],
)
def test_malformed_files(tmp_path, data, match):
    p = _write(tmp_path, data, "bad.json")
    with pytest.raises(ConfigError, match=match) as e:
        load_questions(p)
    assert "bad.json" in str(e.value) and "\n" not in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_questions(tmp_path / "none.json")


def test_answer_letter():
    opts = ("A. cat", "B. dog")
    assert answer_letter("b", opts) == "B"
    assert answer_letter("B. dog", opts) == "B"
    assert answer_letter("dog", opts) == "B"
    assert answer_letter(0, opts) == "A"
    assert answer_letter("fish", opts) is None


def test_accuracy(tmp_path):
    qs = [
        Question("a", 1.0, "1", ("x", "y"), "A"),
        Question("b", 2.0, "2", ("x", "y"), "B"),
        Question("c", 3.0, "3"),  # no answer: not scored
    ]
    answers = [
        TextEvent("answer", "A", 0.0, 1.0, id="1", question="a"),
        TextEvent("answer", "A", 0.0, 2.0, id="2", question="b"),
        TextEvent("note", "B", 0.0, 2.0),
    ]
    acc = compute_accuracy(qs, answers)
    assert acc["questions"] == 2 and acc["correct"] == 1 and acc["accuracy"] == 0.5
    write_accuracy(tmp_path / "accuracy.json", acc)
    assert json.loads((tmp_path / "accuracy.json").read_text())["accuracy"] == 0.5
    assert compute_accuracy(qs, {})["answered"] == 0


def test_schedule_files(tmp_path):
    """The plain schedules livesense client takes: JSON list, JSON lines, 'SECONDS text' lines."""
    p = tmp_path / "q.json"
    p.write_text(json.dumps([{"t": 2, "text": "b"}, {"time": 1, "question": "a", "id": "x"}]))
    qs = load_questions(p).questions
    assert [(q.pts, q.text, q.id) for q in qs] == [(1.0, "a", "x"), (2.0, "b", "q1")]
    p.write_text('{"t": 1, "text": "a"}\n{"t": 0.5, "text": "b"}\n')
    assert [q.text for q in load_questions(p).questions] == ["b", "a"]
    p.write_text("# comment\n0.2 what colour?\n\n1:05 and now?\n")
    qs = load_questions(p).questions
    assert [(q.pts, q.text, q.id) for q in qs] == [
        (0.2, "what colour?", "q2"),
        (65.0, "and now?", "q4"),
    ]
    p.write_text("soon what?\n")
    with pytest.raises(ConfigError, match="q.json: line 1: expected 'SECONDS question'"):
        load_questions(p)
    p.write_text("3\n")
    with pytest.raises(ConfigError, match="no question after the time"):
        load_questions(p)
