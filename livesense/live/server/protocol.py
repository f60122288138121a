"""Wire protocol v1 of live sessions (``ws://HOST:PORT/v1/session``); see docs/protocol.md.

Binary frames carry a 16-byte little-endian header ``kind:u8, flags:u8, reserved:u16,
seq:u32, pts:i64`` followed by the payload. JSON text messages carry control (``start``,
``pose``, ``ask``, ``stop``) and events (``ready``, ``note``, ``answer``, ``stats``, ``error``,
``done``). Everything a client sends is validated here; violations raise
:class:`ProtocolError` with a machine-readable ``code``. Everything the server sends is a
dataclass in :mod:`~livesense.live.server.events`.
"""

from __future__ import annotations

import enum
import json
import math
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.errors import ConfigError, LivesenseError

# fmt: off
__all__ = [
    "AUDIO_FORMATS", "HEADER", "HEADER_SIZE", "MAX_PTS", "PATH", "PROTOCOL_VERSION",
    "SAMPLE_RATES", "AskMessage", "BinaryFrame", "ErrorCode", "Kind", "PoseMessage",
    "ProtocolError", "StartConfig", "check_apart", "decode_audio", "encode_audio", "pack_frame",
    "parse_control", "parse_json", "parse_start", "pose_to_json", "text_value", "unpack_frame",
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
MAX_PTS = 2**53  # larger sample indices are rejected (exact in float64: 5.9 years at 48 kHz)
MAX_INT = 2**63  # integers beyond this are rejected before any float conversion
MIN_DISTANCE_M = 0.05  # closer than this, the speaker is inside the listener's head


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
    UNAUTHORIZED = "unauthorized"
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
    except (ValueError, UnicodeDecodeError) as e:  # incl. integers over 4300 digits
        raise ProtocolError(ErrorCode.BAD_JSON, f"message is not valid JSON: {e}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_JSON, "message is nested too deeply") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, 'message must be a JSON object with a "type"')
    return msg


def _number(v: Any, what: str) -> float:
    # Integers are range-checked before float(), which raises OverflowError past ~1.8e308.
    ok = isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool))
    if not ok or (isinstance(v, int) and not -MAX_INT < v < MAX_INT) or not math.isfinite(v):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{what} must be a finite number, got {_short(v)}"
        )
    return float(v)


def _integer(v: Any, what: str, lo: int, hi: int) -> int:
    """An integer (not a bool or a float) in [lo, hi)."""
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v < hi:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{what} must be an integer in [{lo}, {hi}), got {_short(v)}"
        )
    return v


def _short(v: Any) -> str:
    """A value for an error message, at most ~60 characters (no 4000-digit integers)."""
    r = (
        repr(v)
        if not isinstance(v, int) or abs(v) < 10**40
        else f"an integer of {len(str(abs(v)))} digits"
    )
    return r if len(r) <= 60 else r[:57] + "..."


def text_value(v: Any, what: str, max_chars: int) -> str:
    """A string that is valid Unicode (no lone surrogates) and at most ``max_chars`` long."""
    if not isinstance(v, str):
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what} must be a string")
    if len(v) > max_chars:
        raise ProtocolError(ErrorCode.TOO_LARGE, f"{what} is over {max_chars} characters")
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{what} is not valid Unicode (a lone surrogate)"
        ) from None
    return v


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
    if any(abs(v) > 1e6 for v in o):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"{what}.orientation components must be within +-1e6"
        )
    try:
        return Pose(p, o)  # type: ignore[arg-type]
    except ConfigError as e:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, f"{what}: {e}") from None


def check_apart(speaker: Pose, listener: Pose) -> None:
    """Raise ProtocolError(bad_message) if the speaker is inside the listener's head."""
    d = np.subtract(speaker.position, listener.position)
    if float(np.sqrt(np.sum(d * d))) < MIN_DISTANCE_M:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "the speaker is inside the listener's head")


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
    if isinstance(channels, bool) or not isinstance(channels, int):  # 1.0 is not an integer
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "audio.channels must be an integer")
    if channels != 1:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED, f"audio.channels must be 1, got {_short(channels)}"
        )
    renderer = msg.get("renderer", default_renderer)
    if renderer not in RENDERERS:
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, f"renderer must be one of {list(RENDERERS)}, got {renderer!r}"
        )
    speaker = parse_pose(msg["speaker"], "speaker") if "speaker" in msg else DEFAULT_SPEAKER
    listener = parse_pose(msg["listener"], "listener") if "listener" in msg else DEFAULT_LISTENER
    check_apart(speaker, listener)
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
        if pts is not None:
            pts = _integer(pts, "pose.pts (a sample index)", 0, MAX_PTS)
        sp = parse_pose(msg["speaker"], "speaker") if msg.get("speaker") is not None else None
        li = parse_pose(msg["listener"], "listener") if msg.get("listener") is not None else None
        if sp is None and li is None:
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "pose needs a speaker and/or a listener")
        return PoseMessage(pts, sp, li)
    if t == "ask":
        text = text_value(msg.get("text"), "ask.text", MAX_TEXT_CHARS)
        if not text.strip():
            raise ProtocolError(ErrorCode.BAD_MESSAGE, "ask.text must be a non-empty string")
        qid = msg.get("id", "")
        if isinstance(qid, int) and not isinstance(qid, bool):
            qid = str(_integer(qid, "ask.id", -MAX_INT, MAX_INT))
        return AskMessage(text.strip(), text_value(qid, "ask.id", 200))
    if t == "start":
        raise ProtocolError(ErrorCode.BAD_MESSAGE, "the session has already started")
    raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {t!r}")
