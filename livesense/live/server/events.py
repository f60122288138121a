"""What the live server sends: close codes and the outbound messages (see docs/protocol.md).

Every event is a frozen dataclass here (:data:`Outbound`), turned into JSON in one place
(:func:`to_wire`); every close code the server uses is a constant here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from livesense.live.server.protocol import PROTOCOL_VERSION, ErrorCode
from livesense.stats import LatencySummary
from livesense.streaming.frames import TextEvent

# fmt: off
__all__ = [
    "CLOSE_ERROR", "CLOSE_GOING_AWAY", "CLOSE_NORMAL", "CLOSE_POLICY", "CLOSE_TRY_AGAIN",
    "AudioStats", "Done", "ErrorEvent", "Outbound", "PacketStats", "Ready", "Stats",
    "VideoStats", "to_wire",
]
# fmt: on

CLOSE_NORMAL = 1000  # after ``stop``: everything rendered, ``stats`` + ``done`` sent
CLOSE_GOING_AWAY = 1001  # the server shuts down (SIGTERM/SIGINT): ``done`` was sent first
CLOSE_POLICY = 1008  # the client broke a rule or a limit (an ``error`` event says which)
CLOSE_ERROR = 1011  # a server-side failure (an ``internal`` error event says what)
CLOSE_TRY_AGAIN = 1013  # the server is full


@dataclass(frozen=True)
class ErrorEvent:
    """An ``error`` event: bad input, a degradation, a limit reached (the session goes on
    unless a close follows)."""

    code: ErrorCode
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"type": "error", "code": self.code.value, "message": self.message}


@dataclass(frozen=True)
class Ready:
    """The answer to a valid ``start``."""

    session: str
    chunk_samples: int
    latency_ms: float  # the renderer's algorithmic latency
    sample_rate: int
    format: str
    renderer: str
    reasoner: str | None
    protocol: int = PROTOCOL_VERSION

    def to_json(self) -> dict[str, Any]:
        return {"type": "ready", **asdict(self)}


@dataclass(frozen=True)
class PacketStats:
    """The jitter buffer's counters of audio packets."""

    received: int
    lost: int
    late: int
    duplicates: int
    resyncs: int


@dataclass(frozen=True)
class AudioStats:
    """One session's audio path: renderer, sample counts, latency, deadline misses."""

    renderer: str
    degraded: bool
    samples_in: int
    samples_out: int
    latency_ms: LatencySummary | None  # packet arrival -> its binaural frame sent
    rtf: float | None
    deadline_misses: int
    backlog_ms: float
    packets: PacketStats
    engine: dict[str, Any] | None = None  # shared engine: slot, device, dtype, mode, batches

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_ms"] = None if self.latency_ms is None else self.latency_ms.to_json(3)
        return d


@dataclass(frozen=True)
class VideoStats:
    """One session's video path: frames in, processed, dropped; reasoner evaluations."""

    frames_received: int
    frames_processed: int
    frames_dropped: int
    frames_late: int
    bad_frames: int
    evaluations: int


@dataclass(frozen=True)
class Stats:
    """The periodic (and final) ``stats`` event; the headline figures are repeated at the top."""

    session: str
    elapsed_s: float
    out_backlog_ms: float
    errors: int
    audio: AudioStats
    video: VideoStats | None

    def to_json(self) -> dict[str, Any]:
        a, v = self.audio, self.video
        return {
            "type": "stats",
            "session": self.session,
            "elapsed_s": self.elapsed_s,
            "latency_ms": a.to_json()["latency_ms"],
            "rtf": a.rtf,
            "renderer": a.renderer,
            "degraded": a.degraded,
            "frames_dropped": v.frames_dropped if v else 0,
            "evaluations": v.evaluations if v else 0,
            "out_backlog_ms": self.out_backlog_ms,
            "errors": self.errors,
            "audio": a.to_json(),
            "video": asdict(v) if v else None,
        }


@dataclass(frozen=True)
class Done:
    """The last message of a session that ended with ``stop``."""

    samples_in: int
    samples_out: int

    def to_json(self) -> dict[str, Any]:
        return {"type": "done", "samples_in": self.samples_in, "samples_out": self.samples_out}


Outbound = Ready | ErrorEvent | Stats | Done | TextEvent  # notes and answers are TextEvents


def to_wire(msg: Outbound) -> str:
    """An outbound message as the JSON text sent on the socket."""
    return json.dumps(msg.to_json())
