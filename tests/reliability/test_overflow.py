"""Values that overflow the parser or the renderer, and a renderer that fails: each is an
``error`` event, never a worker failure, a 1011 for client input, or a session that reports
``done`` with audio missing."""

from __future__ import annotations

import time

import numpy as np
import pytest

from livesense.live.engines import DspEngine

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning"),
]

SP = {"position": [1.0, 0.5, 0.0]}
NESTED = "[" * 2000 + "]" * 2000
# (message text, the error code it must get). Written by hand: json.dumps cannot write some.
IN_SESSION = [
    ('{"type":"pose","pts":' + str(2**1024) + ',"speaker":{"position":[1,0,0]}}', "bad_message"),
    ('{"type":"pose","pts":' + str(10**400) + ',"speaker":{"position":[1,0,0]}}', "bad_message"),
    ('{"type":"pose","speaker":{"position":[' + str(10**400) + ",0,0]}}", "bad_message"),
    ('{"type":"pose","speaker":{"position":[1,0,' + str(-(2**1024)) + "]}}", "bad_message"),
    (
        '{"type":"pose","listener":{"position":[0,0,0],"orientation":[0,0,0,'
        + str(10**400)
        + "]}}",
        "bad_message",
    ),
    ('{"type":"pose","speaker":{"position":[1e400,0,0]}}', "bad_message"),
    ('{"type":"pose","pts":' + "9" * 5000 + ',"speaker":{"position":[1,0,0]}}', "bad_json"),
    ("[" * 2000, "bad_json"),
    (NESTED, "bad_json"),
    ('{"type":"pose","speaker":{"position":' + NESTED + "}}", "bad_json"),
    ('{"type":"pose","pts":' + str(10**12) + ',"speaker":{"position":[1,0,0]}}', "bad_message"),
    ('{"type":"pose","pts":NaN,"speaker":{"position":[1,0,0]}}', "bad_message"),
    ('{"type":"ask","text":"lone \\ud800 surrogate","id":"x"}', "bad_message"),
]
IDS = ["pts 2**1024", "pts 10**400", "x 10**400", "z -2**1024", "qw 10**400", "x 1e400",
       "pts 5000 digits", "[ * 2000", "nested 2000", "nested position", "pts 10**12",
       "pts NaN", "ask surrogate"]  # fmt: skip


def _x(n: int, seed: int = 0) -> np.ndarray:
    return (0.05 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@pytest.mark.parametrize(("text", "code"), IN_SESSION, ids=IDS)
def test_overflowing_message_is_an_error_and_the_audio_goes_on(
    live_server, rel, text: str, code: str
) -> None:
    h = live_server()
    start = rel.start_message(reasoning={"enabled": True})  # so an ask reaches the validator
    c = rel.Client(h.url, start)
    assert c.ready is not None, c.events
    x = _x(480 * 20)
    for seq in range(10):
        c.send_audio(seq, x[480 * seq : 480 * (seq + 1)], 480 * seq)
    c.send(text)
    got = c.wait_for(lambda e: e.get("type") == "error", 10)
    assert got is not None and got["code"] == code, (got, c.events[-3:])
    for seq in range(10, 20):
        c.send_audio(seq, x[480 * seq : 480 * (seq + 1)], 480 * seq)
    e = c.finish()
    rel.check_ending(e, text[:40])
    assert e.done is not None and e.done["samples_in"] == 480 * 20, e.describe()
    h.assert_healthy()


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ("[" * 2000, "bad_json"),
        (NESTED, "bad_json"),
        ('{"type":"start","speaker":{"position":[' + str(10**400) + ",0,0]}}", "bad_message"),
        (
            '{"type":"start","speaker":{"position":[1,0,0],"orientation":[0,0,0,'
            + str(2**1024)
            + "]}}",
            "bad_message",
        ),
        ('{"type":"start","audio":{"sample_rate":' + str(10**400) + "}}", None),
        ('{"type":"start","audio":{"channels":' + str(2**1024) + "}}", None),
    ],
    ids=["[ * 2000", "nested", "x 10**400", "qw 2**1024", "rate 10**400", "channels 2**1024"],
)
def test_overflowing_start_is_an_error_and_1008(live_server, rel, first: str, code) -> None:
    h = live_server()
    c = rel.Client(h.url, start=first, wait_ready=False)
    e = c.ending(10)
    rel.check_ending(e, first[:40])
    assert e.code == 1008 and e.errors, e.describe()
    assert code is None or e.errors[0]["code"] == code, e.describe()
    h.assert_healthy()


class _BrokenEngine:
    """A renderer engine whose renderers raise after ``after`` packets (a server-side bug)."""

    name = "neural"

    def __init__(self, dsp: DspEngine, after: int):
        self.dsp, self.after = dsp, after

    def create(self, speaker, listener, sample_rate):
        r = self.dsp.create(speaker, listener, sample_rate)
        step, calls = r.step, [0]

        def failing_step(x):
            calls[0] += 1
            if calls[0] > self.after:
                raise RuntimeError("renderer exploded")
            return step(x)

        r.step = failing_step  # type: ignore[method-assign]
        r.name = "neural"
        return r


def test_renderer_failure_is_internal_error_1011_and_stops_accepting_audio(
    live_server, rel
) -> None:
    dsp = DspEngine()
    h = live_server(renderers={"dsp": dsp, "neural": _BrokenEngine(dsp, after=5)})
    c = rel.Client(h.url, rel.start_message(renderer="neural"))
    assert c.ready is not None and c.ready["renderer"] == "neural", c.events
    x = _x(480)
    t_fail = None
    for seq in range(6000):  # 60 s of audio, as fast as possible: the server must cut it off
        if not c.send_audio(seq, x, 480 * seq):
            break
        if t_fail is None and c.wait_for(lambda e: e.get("code") == "internal", 0):
            t_fail = time.monotonic()
        if t_fail is not None and time.monotonic() - t_fail > 5:
            break
    e = c.ending(10)
    rel.check_ending(e, "a failed renderer")
    assert e.code == 1011 and "internal" in e.error_codes, e.describe()
    assert e.done is None, e.describe()
    assert h.wait_sessions(0) == 0, "the failed session still holds its slot"
    # The worker's own report of the failure is the one traceback allowed.
    h.assert_healthy(allow=lambda r: "renderer exploded" in str(r.exc_info and r.exc_info[1]))
    # The server still serves a good session afterwards.
    ok = rel.Client(h.url)
    ok.send_audio(0, x, 0)
    rel.check_ending(ok.finish(), "the next session")


def test_extreme_but_valid_poses_are_accepted(live_server, rel) -> None:
    """Poses at the edge of the valid range (10 km, a rotated listener) are rendered, no error."""
    h = live_server()
    c = rel.Client(h.url)
    c.send_audio(0, _x(480), 0)
    q = [0.0, 0.0, 2**-0.5, 2**-0.5]
    c.send_json({"type": "pose", "pts": 480, "speaker": {"position": [1e4, -1e4, 1e4]}})
    c.send_json({"type": "pose", "listener": {"position": [0, 0, 0], "orientation": q}})
    c.send_audio(1, _x(480, 1), 480)
    assert c.barrier(), c.events
    e = c.finish()
    rel.check_ending(e)
    assert e.done is not None and e.done["samples_in"] == 960, e.describe()
    assert [err["code"] for err in e.errors] == ["unknown_type"], e.errors  # the barrier's own
    h.assert_healthy()
