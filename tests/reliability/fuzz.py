"""The protocol fuzzer's message generator: seeded, mutates valid session messages.

``Fuzzer(seed).message()`` returns the next :class:`FuzzMessage` of a session: valid audio
packets and poses (so the session has audio to render), and mutations of ``start`` / ``pose``
/ ``ask`` / ``stop`` / binary frames: bad kinds, sizes, seqs and pts, NaN / inf, huge
integers, wrong types, lone surrogates, deep nesting, oversize. ``must_error`` marks the
messages the contract promises an ``error`` event for (a lower bound: others may get one too).
Pure Python, no pytest: loaded by conftest.py (``rel.Fuzzer``).
"""

from __future__ import annotations

import json
import math
import random
import struct
from dataclasses import dataclass
from typing import Any

CHUNK = 480
RATE = 48000
HORIZON = 10 * RATE  # poses further ahead of the session's clock are rejected
MAX_TEXT = 64 * 1024  # ServerConfig.max_text_bytes
MAX_MESSAGE = 4 * 1024 * 1024  # ServerConfig.max_message_bytes (the library closes 1009)
HEADER = struct.Struct("<BBHIq")
NAN, INF = float("nan"), float("inf")


@dataclass(frozen=True)
class FuzzMessage:
    """One message to send: ``data`` (text or binary), whether the server must answer it with
    an ``error`` event, a short description for failure reports, and ``closes`` for a message
    the websockets library answers by closing (oversize: 1009)."""

    data: str | bytes
    must_error: bool
    note: str
    closes: bool = False

    def short(self) -> str:
        d = self.data
        head = d[:60] if isinstance(d, str) else d[:24].hex()
        return f"{self.note}: {head!r}{'...' if len(d) > 60 else ''} ({len(d)} {type(d).__name__})"


class Fuzzer:
    """Messages for one session after another (``new_session`` resets the audio clock)."""

    def __init__(self, seed: int):
        self.rng = random.Random(seed)
        self.fmt = "s16le"
        self.reasoning = False
        self.seq = 0
        self.samples = 0  # samples sent in valid packets: the pts of the next one

    # -- sessions -------------------------------------------------------------------------------

    def new_session(self) -> dict[str, Any]:
        """A valid ``start`` (random format, reasoning, speaker) for the next session."""
        r = self.rng
        self.fmt = r.choice(["s16le", "f32le"])
        self.reasoning = r.random() < 0.3
        self.seq = r.choice([0, 0, 0, r.randrange(2**32)])  # seq may start anywhere (and wrap)
        self.samples = 0
        return {
            "type": "start",
            "audio": {"sample_rate": RATE, "format": self.fmt, "channels": 1},
            "renderer": "dsp",
            "speaker": {"position": self._position(), "orientation": self._quaternion()},
            "reasoning": {"enabled": self.reasoning},
        }

    def bad_start(self) -> FuzzMessage:
        """A first message that must be rejected (``error`` + 1008): anything but a start."""
        while True:
            m = self.message(valid_audio=False)
            text = m.data if isinstance(m.data, str) else ""
            if m.must_error and not m.closes and '"type": "start"' not in text:
                return m

    # -- one message ----------------------------------------------------------------------------

    def message(self, valid_audio: bool = True) -> FuzzMessage:
        r = self.rng.random()
        if valid_audio and r < 0.35:
            return self.audio()
        if r < 0.45:
            return self._valid_pose()
        gens = [
            (6, self._bad_json),
            (4, self._bad_shape),
            (8, self._bad_pose),
            (3, self._ask),
            (6, self._bad_binary),
            (3, self._odd_binary),
            (1, self._oversize),
        ]
        return self.rng.choices([g for _, g in gens], [w for w, _ in gens])[0]()

    def audio(self, n: int | None = None) -> FuzzMessage:
        """The next valid audio packet (sometimes short), in sequence."""
        r = self.rng
        n = n if n is not None else (CHUNK if r.random() < 0.9 else r.randint(1, CHUNK))
        payload = self._samples(n)
        data = HEADER.pack(1, 0, 0, self.seq, self.samples) + payload
        self.seq = (self.seq + 1) % 2**32
        self.samples += n
        return FuzzMessage(data, False, f"audio n {n}")

    # -- generators -----------------------------------------------------------------------------

    def _samples(self, n: int) -> bytes:
        r = self.rng
        if self.fmt == "s16le":
            return struct.pack(f"<{n}h", *(r.randint(-2000, 2000) for _ in range(n)))
        vals = [r.uniform(-0.1, 0.1) for _ in range(n)]
        if r.random() < 0.1:  # non-finite samples are zeroed by the server, not an error
            vals[r.randrange(n)] = r.choice([NAN, INF, -INF])
        return struct.pack(f"<{n}f", *vals)

    def _position(self) -> list[float]:
        r = self.rng
        while True:
            p = [r.uniform(-4, 4), r.uniform(-4, 4), r.uniform(-1, 1)]
            if math.dist(p, (0, 0, 0)) > 0.5:  # well outside the listener's head
                return p

    def _quaternion(self) -> list[float]:
        r = self.rng
        q = [r.gauss(0, 1) for _ in range(4)]
        s = math.sqrt(sum(v * v for v in q)) or 1.0
        return [v / s for v in q]

    def _pose(self, pts: Any = None, **kw: Any) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "pose"}
        if pts is not None:
            msg["pts"] = pts
        msg["speaker"] = {"position": self._position()}
        if self.rng.random() < 0.3:
            msg["speaker"]["orientation"] = self._quaternion()
        msg.update(kw)
        return msg

    def _valid_pose(self) -> FuzzMessage:
        r = self.rng
        pts = r.choice([None, self.samples, max(0, self.samples - r.randint(0, 5000)),
                        self.samples + r.randint(0, RATE)])  # fmt: skip
        msg = self._pose(pts)
        if r.random() < 0.1:
            msg["extra"] = r.choice(["\ud800", "é😀", [1, {"a": None}], 10**30])
        return FuzzMessage(json.dumps(msg), False, "valid pose")

    def _bad_json(self) -> FuzzMessage:
        r = self.rng
        kind = r.randrange(7)
        if kind == 0:  # any proper prefix of an object is not JSON
            s = json.dumps(self._pose(self.samples))
            return FuzzMessage(s[: r.randrange(len(s))], True, "truncated")
        if kind == 1:  # garbage that cannot start an object
            alphabet = '[]{}":,0123456789.eE+-tfnul \\\n\x00é\u2028😀'
            s = r.choice("]}:,x\\ ") + "".join(r.choice(alphabet) for _ in range(r.randint(0, 80)))
            return FuzzMessage(s, True, "garbage")
        if kind == 2:
            depth = r.choice([200, 1000, 2000, 20000])
            return FuzzMessage("[" * depth, True, f"'[' * {depth}")
        if kind == 3:  # well-formed but deeply nested inside a pose
            depth = r.choice([1000, 3000, 10000])
            s = '{"type":"pose","speaker":{"position":' + "[" * depth + "]" * depth + "}}"
            return FuzzMessage(s, True, f"nested {depth} in a pose")
        if kind == 4:  # an integer too long for int() (4300 digits)
            s = '{"type":"pose","pts":1' + "0" * r.choice([4300, 5000, 20000]) + "}"
            return FuzzMessage(s, True, "pts with > 4300 digits")
        if kind == 5:
            s = '{"type":"pose","speaker":{"position":[1e400,0,0]}}'
            return FuzzMessage(s, True, "1e400 literal")
        return FuzzMessage(r.choice(["", " ", "\t\n", "\x00"]), True, "empty")

    def _bad_shape(self) -> FuzzMessage:
        r = self.rng
        choices: list[Any] = [
            [], [{"type": "stop"}], 5, "stop", None, True, {}, {"type": 5}, {"type": None},
            {"type": ["pose"]}, {"type": "STOP"}, {"type": "stop "}, {"type": "pose\u0000"},
            {"type": "\ud800"}, {"type": "stop\ud800"}, {"type": "dance"}, {"type": ""},
            {"type": "start"}, {"type": "start", "audio": {"sample_rate": 48000}},
        ]  # fmt: skip
        msg = r.choice(choices)
        if r.random() < 0.2:  # duplicate keys: the last one wins
            return FuzzMessage('{"type":"stop","type":"dance"}', True, "duplicate type")
        return FuzzMessage(json.dumps(msg), True, "bad shape")

    def _bad_pose(self) -> FuzzMessage:
        r = self.rng
        bad_pts = [-1, -(2**63), 1.5, 5.0, "5", True, [], {}, NAN, INF, 2**63, 2**64, 2**1024,
                   10**400, self.samples + HORIZON + RATE, 10**12]  # fmt: skip
        bad_num = [NAN, INF, -INF, 10**400, 2**1024, -(10**400), 1e300, 1e4 + 1, "1", True,
                   None, [1], {}]  # fmt: skip
        kind = r.randrange(6)
        if kind == 0:
            pts = r.choice(bad_pts)
            return FuzzMessage(json.dumps(self._pose(pts)), True, f"pose pts {_brief(pts)}")
        if kind == 1:
            p = self._position()
            p[r.randrange(3)] = v = r.choice(bad_num)
            msg = self._pose(None, speaker={"position": p})
            return FuzzMessage(json.dumps(msg), True, f"position {_brief(v)}")
        if kind == 2:
            q = self._quaternion()
            q[r.randrange(4)] = v = r.choice(bad_num)
            msg = self._pose(None, listener={"position": [0, 0, 0], "orientation": q})
            return FuzzMessage(json.dumps(msg), True, f"orientation {_brief(v)}")
        if kind == 3:
            pos = r.choice([[1, 2], [1, 2, 3, 4], "abc", None, {"x": 1}, [], [[1], [2], [3]]])
            q = r.choice([[0, 0, 0], [0, 0, 0, 0], "q", [[0], 0, 0, 1], None])
            key = r.choice(["position", "orientation"])
            sp: dict[str, Any] = {"position": pos} if key == "position" else {
                "position": self._position(), "orientation": q}  # fmt: skip
            if key == "orientation" and q is None:
                sp["orientation"] = "none"
            return FuzzMessage(json.dumps(self._pose(None, speaker=sp)), True, f"bad {key}")
        if kind == 4:
            msg = r.choice([
                {"type": "pose"},
                {"type": "pose", "speaker": None, "listener": None},
                {"type": "pose", "speaker": [1, 2, 3]},
                {"type": "pose", "speaker": "here"},
                {"type": "pose", "pts": 0, "listener": 7},
            ])  # fmt: skip
            return FuzzMessage(json.dumps(msg), True, "pose without a pose")
        # An orientation of huge (finite) components: the contract does not say; no claim.
        q = [1e154, 0.0, 0.0, 1.0]
        msg = self._pose(None, listener={"position": [0, 0, 0], "orientation": q})
        return FuzzMessage(json.dumps(msg), False, "orientation 1e154")

    def _ask(self) -> FuzzMessage:
        r = self.rng
        bad = r.random() < 0.7 or not self.reasoning  # without reasoning every ask is an error
        if not bad:
            return FuzzMessage(json.dumps({"type": "ask", "text": "what now?", "id": "q"}),
                               False, "ask")  # fmt: skip
        msg = r.choice([
            {"type": "ask", "text": "lone \ud800 surrogate", "id": "s"},
            {"type": "ask", "text": "\udfff"},
            {"type": "ask", "text": ""},
            {"type": "ask", "text": "   "},
            {"type": "ask", "text": 5},
            {"type": "ask", "text": None},
            {"type": "ask", "text": "x" * 2001},
            {"type": "ask", "text": "ok", "id": ["list"]},
            {"type": "ask", "text": "ok", "id": True},
            {"type": "ask", "text": "ok", "id": "i" * 201},
        ])  # fmt: skip
        if not self.reasoning:
            msg = r.choice([msg, {"type": "ask", "text": "what do you see?"}])
        return FuzzMessage(json.dumps(msg), True, f"ask {_brief(msg.get('text'))}")

    def _bad_binary(self) -> FuzzMessage:
        r = self.rng
        w = 2 if self.fmt == "s16le" else 4
        kind = r.randrange(6)
        if kind == 0:
            n = r.randrange(16)
            return FuzzMessage(r.randbytes(n), True, f"binary of {n} bytes")
        if kind == 1:
            k = r.choice([0, 3, 4, 5, 127, 255])
            data = HEADER.pack(k, 0, 0, self.seq, self.samples) + r.randbytes(r.randrange(64))
            return FuzzMessage(data, True, f"kind {k}")
        if kind == 2:  # not a whole number of samples
            n = r.choice([1, 3, 2 * w * 7 + 1]) if w == 2 else r.choice([1, 2, 3, 4 * 9 + 2])
            data = HEADER.pack(1, 0, 0, self.seq, self.samples) + r.randbytes(n)
            return FuzzMessage(data, True, f"audio payload of {n} bytes")
        if kind == 3:
            data = HEADER.pack(1, 0, 0, self.seq, self.samples)
            return FuzzMessage(data, True, "audio without samples")
        if kind == 4:  # more samples than a packet carries
            n = r.choice([CHUNK + 1, 2 * CHUNK, 30000])
            data = HEADER.pack(1, 0, 0, self.seq, self.samples) + bytes(n * w)
            return FuzzMessage(data, True, f"audio of {n} samples")
        # video in a session without video: only the first gets an error
        data = HEADER.pack(2, 0, 0, self.seq, r.randrange(-(2**63), 2**63)) + b"\xff\xd8junk"
        return FuzzMessage(data, False, "video frame")

    def _odd_binary(self) -> FuzzMessage:
        """Audio with a strange header: no claim about errors (gaps, resyncs, late packets)."""
        r = self.rng
        kind = r.randrange(4)
        payload = self._samples(CHUNK)
        if kind == 0:
            seq = r.choice([self.seq - 1, self.seq - 100, self.seq + 2, self.seq + 70,
                            r.randrange(2**32), (self.seq + 2**31) % 2**32])  # fmt: skip
            return FuzzMessage(HEADER.pack(1, 0, 0, seq % 2**32, self.samples) + payload,
                               False, f"audio seq {seq}")  # fmt: skip
        if kind == 1:
            pts = r.choice([-(2**63), 2**63 - 1, -1, 0])
            data = HEADER.pack(1, 0, 0, self.seq, pts) + payload
            self.seq = (self.seq + 1) % 2**32
            self.samples += CHUNK
            return FuzzMessage(data, False, f"audio pts {pts}")
        if kind == 2:
            flags, reserved = r.randrange(256), r.randrange(65536)
            data = HEADER.pack(1, flags, reserved, self.seq, self.samples) + payload
            self.seq = (self.seq + 1) % 2**32
            self.samples += CHUNK
            return FuzzMessage(data, False, "audio flags/reserved")
        return FuzzMessage(r.randbytes(r.randint(16, 400)), False, "random binary")

    def _oversize(self) -> FuzzMessage:
        r = self.rng
        if r.random() < 0.1:  # past the websocket limit: the library closes with 1009
            return FuzzMessage(b"\x01" + bytes(MAX_MESSAGE + 16), False, "oversize", closes=True)
        n = r.choice([MAX_TEXT + 1, 3 * MAX_TEXT, 1024 * 1024])
        text = json.dumps({"type": "pose", "pad": "x" * n})
        return FuzzMessage(text, True, f"text of {len(text)} chars")


def _brief(v: Any) -> str:
    s = repr(v)
    return s if len(s) < 24 else s[:20] + "..."
