"""Wire protocol v1 of live sessions (``ws://HOST:PORT/v1/session``); see docs/protocol.md.

Binary frames carry a 16-byte little-endian header ``kind:u8, flags:u8, reserved:u16,
seq:u32, pts:i64`` followed by the payload. JSON text messages carry control (``start``,
``pose``, ``ask``, ``stop``) and events (``ready``, ``note``, ``answer``, ``stats``, ``error``,
``done``). Everything a client sends is validated here; violations raise
:class:`ProtocolError` with a machine-readable ``code``. Everything the server sends is a
dataclass here (:data:`Outbound`), turned into JSON in one place (:func:`to_wire`).
"""

from __future__ import annotations

import enum
import json
import math
import struct
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.errors import ConfigError, LivesenseError
from livesense.stats import LatencySummary
from livesense.streaming.frames import TextEvent

# fmt: off
__all__ = [
    "AUDIO_FORMATS", "HEADER", "HEADER_SIZE", "PATH", "PROTOCOL_VERSION", "SAMPLE_RATES",
    "AskMessage", "AudioStats", "BinaryFrame", "Done", "ErrorCode", "ErrorEvent", "Kind",
    "Outbound", "PacketStats", "PoseMessage", "ProtocolError", "Ready", "StartConfig", "Stats",
    "VideoStats", "decode_audio", "encode_audio", "pack_frame", "parse_control", "parse_json",
    "parse_start", "pose_to_json", "to_wire", "unpack_frame",
]
# fmt: on

PROTOCOL_VERSION = 1
PATH = "/v1/session"
HEADER = struct.Struct("<BBHIq")  # kind, flags, reserved, seq, pts
HEADER_SIZE = HEADER.size  # 16
SEQ_MOD = 2**32
AUDIO_FORMATS = ("s16le", "f32le")
SAMPLE_RATES = (48000,)  # other rates are rejected (no server-side resampling)
RENDERERS = ("neural", "dsp")
MAX_TEXT_CHARS = 2000  # longest question


class Kind(enum.IntEnum):
    """Binary frame kinds."""

    AUDIO_IN = 1  # mono audio, session format; pts = first sample's index
    VIDEO_IN = 2  # one JPEG image; pts in microseconds
    AUDIO_OUT = 3  # interleaved stereo, session format; pts = index of the input sample


class ErrorCode(str, enum.Enum):
    """``code`` values of ``error`` messages."""

    BAD_JSON = "bad_json"
    BAD_MESSAGE = "bad_message"
    UNKNOWN_TYPE = "unknown_type"
    NOT_STARTED = "not_started"
    BAD_FRAME = "bad_frame"
    UNKNOWN_KIND = "unknown_kind"
    BAD_SIZE = "bad_size"
    TOO_LARGE = "too_large"
    OUT_OF_ORDER = "out_of_order"
    SEQ_GAP = "seq_gap"
    BAD_IMAGE = "bad_image"
    VIDEO_DISABLED = "video_disabled"
    REASONING_DISABLED = "reasoning_disabled"
    RATE_LIMITED = "rate_limited"
    UNSUPPORTED = "unsupported"
    RENDERER_UNAVAILABLE = "renderer_unavailable"
    DEGRADED = "degraded"
    REASONER_FAILED = "reasoner_failed"
    START_TIMEOUT = "start_timeout"
    IDLE_TIMEOUT = "idle_timeout"
    TIME_LIMIT = "time_limit"
    CLIENT_NOT_READING = "client_not_reading"
    INTERNAL = "internal"


class ProtocolError(LivesenseError):
    """A client message violates the protocol; ``code`` is an :class:`ErrorCode` value."""

    def __init__(self, code: ErrorCode, message: str):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- binary frames


@dataclass(frozen=True)
class BinaryFrame:
    """A decoded binary frame (``payload`` is a zero-copy view of the message)."""

    kind: int
    flags: int
    seq: int
    pts: int
    payload: memoryview


def pack_frame(kind: int, seq: int, pts: int, payload: bytes | memoryview, flags: int = 0) -> bytes:
    """Header + payload as one message (``seq`` wraps at 2**32)."""
    return HEADER.pack(int(kind), int(flags), 0, int(seq) % SEQ_MOD, int(pts)) + bytes(payload)


def unpack_frame(data: bytes | bytearray | memoryview) -> BinaryFrame:
    """Split a binary message; raises ProtocolError(bad_frame / unknown_kind)."""
    if len(data) < HEADER_SIZE:
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"binary frame of {len(data)} bytes is shorter than the header"
        )
    kind, flags, _reserved, seq, pts = HEADER.unpack_from(data, 0)
    if kind not in Kind.__members__.values():
        raise ProtocolError(ErrorCode.UNKNOWN_KIND, f"unknown binary frame kind {kind}")
    return BinaryFrame(kind, flags, seq, pts, memoryview(data)[HEADER_SIZE:])


def bytes_per_sample(fmt: str) -> int:
    return 2 if fmt == "s16le" else 4


def encode_audio(x: np.ndarray, fmt: str) -> bytes:
    """float (channels, n) -> interleaved little-endian bytes.

    s16le: ``clip(round(x * 32768), -32768, 32767)`` (exactly inverted by :func:`decode_audio`
    for values on the grid); f32le: float32, NaN -> 0.
    """
    a = np.nan_to_num(np.asarray(x, dtype=np.float32), nan=0.0)
    if a.ndim == 1:
        a = a[None]
    a = a.T  # (n, channels) interleaved
    if fmt == "s16le":
        return np.clip(np.round(a * 32768.0), -32768, 32767).astype("<i2").tobytes()
    if fmt == "f32le":
        return np.ascontiguousarray(a, dtype="<f4").tobytes()
    raise ValueError(f"unknown audio format {fmt!r}")


def decode_audio(payload: bytes | memoryview, fmt: str, channels: int = 1) -> np.ndarray:
    """Interleaved bytes -> float32 (channels, n); raises ProtocolError(bad_size)."""
    width = bytes_per_sample(fmt) * channels
    if len(payload) == 0 or len(payload) % width:
        raise ProtocolError(
            ErrorCode.BAD_SIZE,
            f"audio payload of {len(payload)} bytes is not a whole number of {fmt} "
            f"{channels}-channel samples",
        )
    if fmt == "s16le":
        a = np.frombuffer(payload, dtype="<i2").astype(np.float32) / 32768.0
    else:
        a = np.frombuffer(payload, dtype="<f4").astype(np.float32)
        if not np.isfinite(a).all():
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
    return a.reshape(-1, channels).T  # (channels, n)


# --------------------------------------------------------------------------- JSON messages


def parse_json(text: str | bytes, max_chars: int = 65536) -> dict[str, Any]:
    """A JSON object with a string ``type``; raises ProtocolError(bad_json / bad_message)."""
    if len(text) > max_chars:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"text message longer than {max_chars} bytes")
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {e}") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, 'message must be a JSON object with a "type"')
    return msg


def _number(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} must be a finite number, got {v!r}")
    return float(v)


def parse_pose(obj: Any, what: str) -> Pose:
    """``{"position":[x,y,z],"orientation":[qx,qy,qz,qw]}`` (orientation optional)."""
    if not isinstance(obj, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} must be an object with a position")
    pos = obj.get("position")
    if not isinstance(pos, list) or len(pos) != 3:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}.position must be [x, y, z]")
    q = obj.get("orientation", [0.0, 0.0, 0.0, 1.0])
    if not isinstance(q, list) or len(q) != 4:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}.orientation must be [qx, qy, qz, qw]")
    p = tuple(_number(v, f"{what}.position") for v in pos)
    o = tuple(_number(v, f"{what}.orientation") for v in q)
    if any(abs(v) > 1e4 for v in p):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}.position is out of range (> 10 km)")
    try:
        return Pose(p, o)  # type: ignore[arg-type]
    except ConfigError as e:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}: {e}") from None


def pose_to_json(pose: Pose) -> dict[str, list[float]]:
    return {"position": list(pose.position), "orientation": list(pose.orientation)}


@dataclass(frozen=True)
class StartConfig:
    """A validated ``start`` message."""

    sample_rate: int = 48000
    format: str = "s16le"
    channels: int = 1
    video: bool = False
    speaker: Pose = DEFAULT_SPEAKER
    listener: Pose = DEFAULT_LISTENER
    renderer: str = "dsp"
    reasoning: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "start",
            "audio": {"sample_rate": self.sample_rate, "format": self.format, "channels": 1},
            "video": {"enabled": self.video},
            "speaker": pose_to_json(self.speaker),
            "listener": pose_to_json(self.listener),
            "renderer": self.renderer,
            "reasoning": {"enabled": self.reasoning},
        }


def _section(msg: dict[str, Any], key: str) -> dict[str, Any]:
    v = msg.get(key, {})
    if not isinstance(v, dict):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f'"{key}" must be an object')
    return v


def _flag(section: dict[str, Any], key: str, what: str) -> bool:
    v = section.get("enabled", False)
    if not isinstance(v, bool):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}.enabled must be true or false")
    return v


def parse_start(msg: dict[str, Any], default_renderer: str = "dsp") -> StartConfig:
    """Validate a ``start`` message (already parsed by :func:`parse_json`)."""
    if msg.get("type") != "start":
        raise ProtocolError(
            ErrorCode.NOT_STARTED, f'the first message must be "start", got {msg.get("type")!r}'
        )
    audio = _section(msg, "audio")
    rate = audio.get("sample_rate", 48000)
    if isinstance(rate, bool) or not isinstance(rate, int):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "audio.sample_rate must be an integer")
    if rate not in SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED,
            f"audio.sample_rate {rate} is not supported; use 48000 (resample on the client)",
        )
    fmt = audio.get("format", "s16le")
    if fmt not in AUDIO_FORMATS:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED, f"audio.format must be one of {list(AUDIO_FORMATS)}, got {fmt!r}"
        )
    channels = audio.get("channels", 1)
    if channels != 1 or isinstance(channels, bool):
        raise ProtocolError(ErrorCode.UNSUPPORTED, f"audio.channels must be 1, got {channels!r}")
    renderer = msg.get("renderer", default_renderer)
    if renderer not in RENDERERS:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"renderer must be one of {list(RENDERERS)}, got {renderer!r}"
        )
    speaker = parse_pose(msg["speaker"], "speaker") if "speaker" in msg else DEFAULT_SPEAKER
    listener = parse_pose(msg["listener"], "listener") if "listener" in msg else DEFAULT_LISTENER
    d = np.subtract(speaker.position, listener.position)
    if float(np.sqrt(np.sum(d * d))) < 0.05:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "the speaker is inside the listener's head")
    return StartConfig(
        sample_rate=rate,
        format=fmt,
        channels=1,
        video=_flag(_section(msg, "video"), "enabled", "video"),
        speaker=speaker,
        listener=listener,
        renderer=renderer,
        reasoning=_flag(_section(msg, "reasoning"), "enabled", "reasoning"),
    )


@dataclass(frozen=True)
class PoseMessage:
    """A ``pose`` update effective from input sample ``pts`` (None: the next sample)."""

    pts: int | None
    speaker: Pose | None
    listener: Pose | None


@dataclass(frozen=True)
class AskMessage:
    """An ``ask`` message."""

    text: str
    id: str


def parse_control(msg: dict[str, Any]) -> PoseMessage | AskMessage | str:
    """Validate an in-session message: a PoseMessage, an AskMessage or ``"stop"``."""
    t = msg["type"]
    if t == "stop":
        return "stop"
    if t == "pose":
        pts = msg.get("pts")
        if pts is not None and (isinstance(pts, bool) or not isinstance(pts, int) or pts < 0):
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "pose.pts must be a sample index >= 0")
        sp = parse_pose(msg["speaker"], "speaker") if msg.get("speaker") is not None else None
        li = parse_pose(msg["listener"], "listener") if msg.get("listener") is not None else None
        if sp is None and li is None:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "pose needs a speaker and/or a listener")
        return PoseMessage(pts, sp, li)
    if t == "ask":
        text, qid = msg.get("text"), msg.get("id", "")
        if not isinstance(text, str) or not text.strip():
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "ask.text must be a non-empty string")
        if len(text) > MAX_TEXT_CHARS:
            raise ProtocolError(ErrorCode.TOO_LARGE, f"ask.text is over {MAX_TEXT_CHARS} chars")
        if not isinstance(qid, str | int) or isinstance(qid, bool) or len(str(qid)) > 200:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "ask.id must be a short string")
        return AskMessage(text.strip(), str(qid))
    if t == "start":
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "the session has already started")
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {t!r}")


# --------------------------------------------------------------------------- outbound messages


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
