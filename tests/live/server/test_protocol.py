"""Wire protocol v1: binary header, audio payloads, message validation."""

from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from livesense.audio.geometry import Pose
from livesense.live.server.protocol import (
    HEADER_SIZE,
    AskMessage,
    ErrorCode,
    Kind,
    PoseMessage,
    ProtocolError,
    StartConfig,
    decode_audio,
    encode_audio,
    pack_frame,
    parse_control,
    parse_json,
    parse_start,
    unpack_frame,
)


def test_header_layout_is_16_bytes_little_endian() -> None:
    data = pack_frame(Kind.AUDIO_OUT, seq=0x01020304, pts=-2, payload=b"xy", flags=5)
    assert HEADER_SIZE == 16
    assert data[:16] == bytes([3, 5, 0, 0, 4, 3, 2, 1]) + struct.pack("<q", -2)
    assert data[16:] == b"xy"


@settings(max_examples=50, deadline=None)
@given(
    kind=st.sampled_from(list(Kind)),
    flags=st.integers(0, 255),
    seq=st.integers(0, 2**32 - 1),
    pts=st.integers(-(2**63), 2**63 - 1),
    payload=st.binary(max_size=64),
)
def test_pack_unpack_roundtrip(kind: Kind, flags: int, seq: int, pts: int, payload: bytes) -> None:
    f = unpack_frame(pack_frame(kind, seq, pts, payload, flags))
    assert (f.kind, f.flags, f.seq, f.pts, bytes(f.payload)) == (kind, flags, seq, pts, payload)


def test_seq_wraps() -> None:
    assert unpack_frame(pack_frame(Kind.AUDIO_IN, 2**32 + 7, 0, b"")).seq == 7


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", ErrorCode.BAD_FRAME),
        (b"\x01" * 15, ErrorCode.BAD_FRAME),
        (bytes([9]) + bytes(15), ErrorCode.UNKNOWN_KIND),
        (bytes(16), ErrorCode.UNKNOWN_KIND),
    ],
)
def test_unpack_rejects(data: bytes, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as e:
        unpack_frame(data)
    assert e.value.code == code


def test_s16_roundtrip_is_exact_on_the_grid_and_clips() -> None:
    grid = np.arange(-32768, 32768, 37, dtype=np.float32) / 32768
    assert np.array_equal(decode_audio(encode_audio(grid[None], "s16le"), "s16le")[0], grid)
    y = decode_audio(encode_audio(np.array([[2.0, -2.0, np.nan]]), "s16le"), "s16le")
    assert np.allclose(y, [[32767 / 32768, -1.0, 0.0]])


def test_f32_stereo_is_interleaved_and_exact() -> None:
    x = np.array([[0.1, 0.2, 0.3], [-0.1, -0.2, -0.3]], np.float32)
    raw = encode_audio(x, "f32le")
    assert np.array_equal(np.frombuffer(raw, "<f4"), x.T.ravel())
    assert np.array_equal(decode_audio(raw, "f32le", 2), x)


@pytest.mark.parametrize(
    ("payload", "fmt"), [(b"\x00", "s16le"), (b"\x00" * 6, "f32le"), (b"", "s16le")]
)
def test_decode_audio_rejects_partial_samples(payload: bytes, fmt: str) -> None:
    with pytest.raises(ProtocolError) as e:
        decode_audio(payload, fmt)
    assert e.value.code == ErrorCode.BAD_SIZE


def test_decode_f32_replaces_non_finite() -> None:
    raw = np.array([np.inf, np.nan, 0.5], "<f4").tobytes()
    assert np.array_equal(decode_audio(raw, "f32le")[0], [0.0, 0.0, 0.5])


def test_start_roundtrip_and_defaults() -> None:
    cfg = StartConfig(format="f32le", video=True, reasoning=True, renderer="neural")
    assert parse_start(json.loads(json.dumps(cfg.to_json()))) == cfg
    d = parse_start({"type": "start"})
    assert (d.sample_rate, d.format, d.renderer, d.video) == (48000, "s16le", "dsp", False)
    assert parse_start({"type": "start"}, default_renderer="neural").renderer == "neural"


@pytest.mark.parametrize(
    ("msg", "code"),
    [
        ({"type": "pose"}, ErrorCode.NOT_STARTED),
        ({"type": "start", "audio": {"sample_rate": 44100}}, ErrorCode.UNSUPPORTED),
        ({"type": "start", "audio": {"sample_rate": "48000"}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "audio": {"format": "mp3"}}, ErrorCode.UNSUPPORTED),
        ({"type": "start", "audio": {"channels": 2}}, ErrorCode.UNSUPPORTED),
        ({"type": "start", "audio": 5}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "renderer": "magic"}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "video": {"enabled": "yes"}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "speaker": {"position": [1, 2]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "speaker": {"position": [1, 2, 1e9]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "speaker": {"position": [1, 0, 0], "orientation": [0, 0, 0, 0]}},
         ErrorCode.BAD_MESSAGE),
        ({"type": "start", "speaker": {"position": [0, 0, 0.01]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "listener": {"position": [True, 0, 0]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "audio": {"channels": 1.0}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "audio": {"channels": 10**400}}, ErrorCode.UNSUPPORTED),
        ({"type": "start", "speaker": {"position": [10**400, 0, 0]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "speaker": {"position": [2**63, 0, 0]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "start", "speaker": {"position": [1, 0, 0], "orientation": [1e154, 0, 0, 1]}},
         ErrorCode.BAD_MESSAGE),
    ],
)  # fmt: skip
def test_start_rejects(msg: dict, code: ErrorCode) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_start(msg)
    assert e.value.code == code


def test_parse_json_errors() -> None:
    for text, code in [
        ("{", ErrorCode.BAD_JSON),
        ("[1]", ErrorCode.BAD_MESSAGE),
        ('{"type": 3}', ErrorCode.BAD_MESSAGE),
        ('{"type": "x", "pad": "' + "a" * 100 + '"}', ErrorCode.TOO_LARGE),
    ]:
        with pytest.raises(ProtocolError) as e:
            parse_json(text, max_chars=64)
        assert e.value.code == code


def test_parse_control() -> None:
    assert parse_control({"type": "stop"}) == "stop"
    p = parse_control({"type": "pose", "pts": 480, "speaker": {"position": [0, 1, 0]}})
    assert isinstance(p, PoseMessage) and p.pts == 480 and p.listener is None
    assert p.speaker is not None and p.speaker.position == (0.0, 1.0, 0.0)
    a = parse_control({"type": "ask", "text": " what? ", "id": 7})
    assert a == AskMessage("what?", "7")
    for msg, code in [
        ({"type": "pose"}, ErrorCode.BAD_MESSAGE),
        ({"type": "pose", "pts": -1, "speaker": {"position": [1, 0, 0]}}, ErrorCode.BAD_MESSAGE),
        ({"type": "ask", "text": ""}, ErrorCode.BAD_MESSAGE),
        ({"type": "ask", "text": "x" * 5000}, ErrorCode.TOO_LARGE),
        ({"type": "start"}, ErrorCode.BAD_MESSAGE),
        ({"type": "dance"}, ErrorCode.UNKNOWN_TYPE),
    ]:
        with pytest.raises(ProtocolError) as e:
            parse_control(msg)
        assert e.value.code == code


@pytest.mark.parametrize(
    ("msg", "needle"),
    [
        ({"type": "pose", "pts": 2**1024, "speaker": {"position": [1, 0, 0]}}, "pose.pts"),
        ({"type": "pose", "pts": 1.5, "speaker": {"position": [1, 0, 0]}}, "pose.pts"),
        ({"type": "pose", "pts": True, "speaker": {"position": [1, 0, 0]}}, "pose.pts"),
        ({"type": "pose", "speaker": {"position": [10**400, 0, 0]}}, "integer of 401 digits"),
        ({"type": "ask", "text": "\ud800 hi"}, "lone surrogate"),
        ({"type": "ask", "text": "hi", "id": "\udfff"}, "lone surrogate"),
        ({"type": "ask", "text": "hi", "id": 10**30}, "ask.id"),
        ({"type": "ask", "text": "hi", "id": [1]}, "ask.id"),
    ],
)
def test_parse_control_rejects_before_any_overflow(msg: dict, needle: str) -> None:
    with pytest.raises(ProtocolError) as e:
        parse_control(msg)
    assert e.value.code == ErrorCode.BAD_MESSAGE and needle in str(e.value)
    assert len(str(e.value)) < 200  # no 400-digit numbers echoed back


def test_deeply_nested_json_is_bad_json() -> None:
    for text in ("[" * 2000, '{"a":' * 5000 + "1" + "}" * 5000):
        with pytest.raises(ProtocolError) as e:
            parse_json(text, max_chars=10**6)
        assert e.value.code == ErrorCode.BAD_JSON


def test_huge_quaternions_normalise_instead_of_collapsing() -> None:
    pose = Pose((1.0, 0.0, 0.0), (1e300, 0.0, 0.0, 1e300))
    np.testing.assert_allclose(pose.orientation, (2**-0.5, 0.0, 0.0, 2**-0.5))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(["type", "pts", "speaker", "listener", "text", "id", "audio", "position"])


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["pose", "ask", "stop", "start", "x"]),
    fields=st.dictionaries(_keys, _json, max_size=4),
    speaker=st.lists(_json, max_size=5),
)
def test_any_json_message_parses_or_is_a_protocol_error(kind, fields, speaker) -> None:
    msg = {"type": kind, **fields, "speaker": {"position": speaker}}
    msg["type"] = kind
    for parse in (parse_control, parse_start):
        with contextlib.suppress(ProtocolError):  # the only way a parser may fail
            parse(msg)
