"""Question files, the one loader for every command, option letters and accuracy.

:func:`load_questions` reads:

- StreamingBench: ``{video_path, questions: [{question, time_stamp "HH:MM:SS", options?,
  answer?}]}`` (or a list of such objects);
- OVO-Bench: ``{id, video, realtime, question, options?, gt?}`` or a list of them;
  ``realtime`` is seconds, ``gt`` an option index or letter;
- a plain schedule: a JSON list (or JSON lines) of ``{"t": 3.5, "text": "...", "id": "q1"}``
  (``time``/``pts`` and ``question`` are accepted too), or text lines ``SECONDS question``
  (``#`` starts a comment).

Malformed files raise :class:`~livesense.errors.ConfigError` naming the file and what is wrong.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from livesense.errors import ConfigError
from livesense.streaming.frames import Question, TextEvent

__all__ = [
    "QuestionSet",
    "answer_letter",
    "compute_accuracy",
    "load_questions",
    "option_letters",
    "parse_timestamp",
    "strip_letter",
    "write_accuracy",
]

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_SCHEDULE_TIME_KEYS = ("t", "time", "pts")
_PREFIX = re.compile(r"^\s*\(?([A-Z])[\.\):]\s+")


@dataclass(frozen=True)
class QuestionSet:
    """Questions sorted by time; ``video`` is the file they refer to, when the file says."""

    questions: list[Question]
    video: str | None = None


def parse_timestamp(value: object) -> float:
    """ "HH:MM:SS(.f)", "MM:SS", "SS" or a number -> seconds. Raises ValueError."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, (int, float)):
        t = float(value)
    elif isinstance(value, str) and value.strip():
        parts = value.strip().split(":")
        if len(parts) > 3:
            raise ValueError(f"not a time: {value!r}")
        t = 0.0
        for p in parts:
            t = t * 60 + float(p)
    else:
        raise ValueError(f"not a time: {value!r}")
    if not t >= 0 or t == float("inf"):
        raise ValueError(f"time must be a finite non-negative number: {value!r}")
    return t


def option_letters(n: int) -> list[str]:
    return list(LETTERS[:n])


def strip_letter(option: str) -> str:
    """ "A. cat" -> "cat" (options often carry their letter already)."""
    return _PREFIX.sub("", option, count=1).strip()


def answer_letter(answer: object, options: Sequence[str]) -> str | None:
    """Normalise an answer (letter, "A. text", option text, or 0-based index) to a letter."""
    if answer is None or not options:
        return None if answer is None else str(answer)
    if isinstance(answer, bool):
        return None
    if isinstance(answer, int):
        return LETTERS[answer] if 0 <= answer < len(options) else None
    s = str(answer).strip()
    if len(s) == 1 and s.upper() in LETTERS[: len(options)]:
        return s.upper()
    m = _PREFIX.match(s + " ")
    if m and m.group(1) in LETTERS[: len(options)]:
        return m.group(1)
    texts = [strip_letter(o).lower() for o in options]
    if strip_letter(s).lower() in texts:
        return LETTERS[texts.index(strip_letter(s).lower())]
    if s.isdigit() and int(s) < len(options):
        return LETTERS[int(s)]
    return None


def _fail(path: str, where: str, what: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {what}")


def _options(path: str, where: str, raw: object) -> tuple[str, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not all(isinstance(o, (str, int, float)) for o in raw):
        raise _fail(path, where, "'options' must be a list of strings")
    if len(raw) > len(LETTERS):
        raise _fail(path, where, f"too many options ({len(raw)})")
    return tuple(str(o) for o in raw)


def _question(
    path: str, where: str, obj: Mapping, time_key: str, ans_key: str, qid: str
) -> Question:
    text = obj.get("question")
    if not isinstance(text, str) or not text.strip():
        raise _fail(path, where, "missing or empty 'question'")
    if time_key not in obj:
        raise _fail(path, where, f"missing '{time_key}'")
    try:
        t = parse_timestamp(obj[time_key])
    except ValueError as e:
        raise _fail(path, where, f"bad '{time_key}': {e}") from None
    options = _options(path, where, obj.get("options"))
    raw = obj.get(ans_key)
    answer = answer_letter(raw, options) if options else (None if raw is None else str(raw))
    if raw is not None and options and answer is None:
        raise _fail(path, where, f"'{ans_key}' {raw!r} matches none of the {len(options)} options")
    return Question(text=text.strip(), pts=t, id=qid, options=options, answer=answer)


def _parse(path: str, data: object) -> QuestionSet:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise ConfigError(f"{path}: no questions")
    questions: list[Question] = []
    videos: set[str] = set()
    stem = Path(path).stem
    for i, item in enumerate(items):
        where = f"item {i}"
        if not isinstance(item, dict):
            raise _fail(path, where, f"expected a JSON object, got {type(item).__name__}")
        if "questions" in item:  # StreamingBench
            qs = item["questions"]
            if not isinstance(qs, list):
                raise _fail(path, where, "'questions' must be a list")
            if isinstance(item.get("video_path"), str):
                videos.add(item["video_path"])
            for j, q in enumerate(qs):
                w = f"{where}, question {j}"
                if not isinstance(q, dict):
                    raise _fail(path, w, "expected a JSON object")
                qid = str(q.get("id", f"{stem}-{i}-{j}"))
                questions.append(_question(path, w, q, "time_stamp", "answer", qid))
        elif "realtime" in item or "video" in item:  # OVO-Bench
            if isinstance(item.get("video"), str):
                videos.add(item["video"])
            qid = str(item.get("id", f"{stem}-{i}"))
            questions.append(_question(path, where, item, "realtime", "gt", qid))
        elif key := next((k for k in _SCHEDULE_TIME_KEYS if k in item), None):  # a schedule
            obj = {**item, "question": item.get("text", item.get("question"))}
            questions.append(
                _question(path, where, obj, key, "answer", str(item.get("id", f"q{i + 1}")))
            )
        else:
            raise _fail(
                path,
                where,
                "unknown format: expected StreamingBench {video_path, questions: [...]}, "
                'OVO-Bench {id, video, realtime, question} or {"t": SECONDS, "text": ...}',
            )
    questions.sort(key=lambda q: q.pts)
    return QuestionSet(questions, videos.pop() if len(videos) == 1 else None)


def _schedule_lines(path: str, text: str) -> QuestionSet:
    """Text lines ``SECONDS question`` (blank lines and ``#`` comments skipped)."""
    items = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        t, _, q = line.strip().partition(" ")
        items.append({"t": t, "text": q.strip(), "id": f"q{i + 1}", "_line": i + 1})
    questions = []
    for it in items:
        where = f"line {it['_line']}"
        try:
            t = parse_timestamp(it["t"])
        except ValueError:
            raise _fail(path, where, f"expected 'SECONDS question', got {it['t']!r}") from None
        if not it["text"]:
            raise _fail(path, where, "no question after the time")
        questions.append(Question(text=it["text"], pts=t, id=it["id"]))
    if not questions:
        raise ConfigError(f"{path}: no questions")
    return QuestionSet(sorted(questions, key=lambda q: q.pts))


def load_questions(path: str | os.PathLike) -> QuestionSet:
    """Read a question file in any of the formats of the module docstring."""
    p = os.fspath(path)
    try:
        with open(p, encoding="utf-8") as f:
            text = f.read().strip()
    except FileNotFoundError:
        raise ConfigError(f"{p}: question file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{p}: cannot read question file: {e}") from None
    if not text.startswith(("[", "{")):
        return _schedule_lines(p, text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        lines = [line for line in text.splitlines() if line.strip()]
        try:  # JSON lines: one object per line
            data = [json.loads(line) for line in lines] if len(lines) > 1 else None
        except json.JSONDecodeError:
            data = None
        if data is None:
            raise ConfigError(
                f"{p}: not valid JSON (line {e.lineno}, column {e.colno}): {e.msg}"
            ) from None
    return _parse(p, data)


def compute_accuracy(
    questions: Iterable[Question], answers: Iterable[TextEvent] | Mapping[str, str]
) -> dict:
    """Accuracy over questions with a known answer. ``answers``: answer events or {id: text}."""
    if isinstance(answers, Mapping):
        given = dict(answers)
    else:
        given = {a.id: a.text for a in answers if a.type == "answer" and a.id is not None}
    rows, correct, scored = [], 0, 0
    for q in questions:
        if q.answer is None:
            continue
        scored += 1
        text = given.get(q.id)
        pred = answer_letter(text.strip()[:1], q.options) if (text and q.options) else text
        ok = pred is not None and pred.strip().lower() == q.answer.strip().lower()
        correct += ok
        rows.append({"id": q.id, "answer": q.answer, "predicted": pred, "correct": bool(ok)})
    return {
        "questions": scored,
        "answered": sum(r["predicted"] is not None for r in rows),
        "correct": correct,
        "accuracy": correct / scored if scored else None,
        "per_question": rows,
    }


def write_accuracy(path: str | os.PathLike, accuracy: Mapping) -> None:
    """Write ``accuracy.json`` (indented)."""
    with open(path, "w", encoding="utf-8") as f:
        json.dump(accuracy, f, indent=2)
        f.write("\n")
