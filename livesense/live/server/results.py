"""What came back from a live session (:class:`ClientResult`), why it ended, and how it is saved.

A session ends normally when ``done`` arrived (whatever the close code: ``1000`` after the
client's ``stop``, ``1001`` when the server shut down and drained). Every other end (a
rejected ``start``, a server-side close such as 1008/1011/1013, a lost connection) keeps what
arrived and says why in :attr:`ClientResult.error`; :func:`save_result` writes it all.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from livesense.errors import MediaError
from livesense.live.server.protocol import ErrorCode
from livesense.media.wav import write_wav
from livesense.stats import LatencySummary

__all__ = ["ClientResult", "end_error", "save_result"]

# Error events that report a degradation, not the end of a session: never named as its cause.
_WARNINGS = {
    ErrorCode.RENDERER_UNAVAILABLE.value,
    ErrorCode.DEGRADED.value,
    ErrorCode.REASONER_FAILED.value,
    ErrorCode.VIDEO_DISABLED.value,
    ErrorCode.REASONING_DISABLED.value,
}
ABNORMAL_CLOSURE = 1006  # no close frame: the connection was lost


@dataclass
class ClientResult:
    """What came back from a session (also when it ended abnormally)."""

    audio: np.ndarray  # (2, n) float32 binaural, in input order
    events: list[dict[str, Any]]  # note / answer / error events, in arrival order
    stats: dict[str, Any] | None  # the last stats message
    ready: dict[str, Any]  # empty when the session was rejected before ``ready``
    done: dict[str, Any] | None
    latencies_ms: list[float]  # per output frame: send of its last input sample -> receipt
    samples_sent: int = 0
    close_code: int | None = None  # 1006: the connection was lost without a close frame
    close_reason: str = ""
    interrupted: bool = False  # the user stopped the stream (Ctrl-C): ``stop`` was sent early
    sent_all: bool = False  # the whole input was sent
    error: str | None = None  # why the session did not end normally (None when it did)

    @property
    def ended_normally(self) -> bool:
        """``done`` arrived: every received sample was rendered and sent back."""
        return self.done is not None

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The ``error`` events received."""
        return [e for e in self.events if e.get("type") == "error"]


def end_error(res: ClientResult, default: str | None = None) -> str | None:
    """Why ``res`` ended abnormally, in one line (None when ``done`` arrived)."""
    if res.ended_normally:
        return None
    code = ABNORMAL_CLOSURE if res.close_code is None else res.close_code
    if code == ABNORMAL_CLOSURE:
        what = "connection lost" if res.ready else "connection lost before 'ready'"
        return default or f"{what} (close {code}) without 'done'"
    close = f"close {code}: {res.close_reason}" if res.close_reason else f"close {code}"
    what = "the server ended the session" if res.ready else "session rejected by the server"
    cause = [e for e in res.errors if e.get("code") not in _WARNINGS]
    if cause:
        return f"{what} ({close}): {cause[-1].get('code')}: {cause[-1].get('message')}"
    return default or f"{what} ({close})"


def save_result(res: ClientResult, out_dir: str | os.PathLike) -> None:
    """Write ``binaural.wav`` (what arrived, also when partial), ``transcript.jsonl`` (every
    text event) and ``stats.json`` (counts, latency, the last server ``stats``, ``done``, the
    close code and reason, the error events) into ``out_dir``; MediaError if it cannot."""
    out = Path(out_dir)
    lat = LatencySummary.of(res.latencies_ms)
    summary = {
        "samples_sent": res.samples_sent,
        "samples_received": int(res.audio.shape[1]),
        "latency_ms": None if lat is None else lat.to_json(),
        "session": res.ready.get("session"),
        "renderer": res.ready.get("renderer"),
        "server": res.stats,
        "done": res.done,
        "ended_normally": res.ended_normally,
        "interrupted": res.interrupted,
        "sent_all": res.sent_all,
        "close": {"code": res.close_code, "reason": res.close_reason},
        "error": res.error,
        "errors": res.errors,
    }
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_wav(out / "binaural.wav", res.audio, int(res.ready.get("sample_rate", 48000)))
        with open(out / "transcript.jsonl", "w", encoding="utf-8") as f:
            for ev in res.events:
                f.write(json.dumps(ev) + "\n")
        (out / "stats.json").write_text(json.dumps(summary, indent=2) + "\n")
    except OSError as e:
        raise MediaError(f"cannot save into {out}: {e.strerror or e}") from None
