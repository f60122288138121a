"""Live neural sessions through one shared render engine (issue 13): concurrent sessions batch
in one engine and get every sample back, stats report the engine, a vanished client frees its
slot, a full engine gives the DSP renderer with a warning, and each session's audio equals a
single-stream render (an untrained ``small`` model at a fixed NFE 2: no NFE policy)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection
from wsclient import audio_frame, is_type, open_session, recv_until, server_thread

from livesense.audio.geometry import Pose
from livesense.live.engines import NeuralEngine
from livesense.live.server.app import ServerThread
from livesense.live.server.config import SessionLimits
from livesense.live.server.protocol import StartConfig, decode_audio, unpack_frame
from livesense.models.binaural import NeuralBinauralRenderer, random_model
from livesense.models.binaural.unet import BinauralFlowUNet

pytestmark = pytest.mark.filterwarnings("ignore:connect\\(\\) must be used:DeprecationWarning")

PACKET = 480
# Audio is sent faster than real time (so sessions overlap in the engine's ticks); the wait of
# a queued packet would count as a deadline miss, so no session may degrade here (at most
# ``miss_window`` misses can be counted).
NO_DEGRADE = SessionLimits(miss_window=50, miss_degrade=51)
SPEAKER = Pose((0.0, 1.5, 0.0))


@pytest.fixture(scope="module")
def model() -> BinauralFlowUNet:
    torch.set_num_threads(1)
    return random_model("small", 0)


@pytest.fixture
def make_engine(model: BinauralFlowUNet) -> Iterator[Callable[[int], NeuralEngine]]:
    built: list[NeuralEngine] = []

    def make(capacity: int, process: bool = False) -> NeuralEngine:
        built.append(NeuralEngine(model=model, nfe=2, capacity=capacity, process=process))
        return built[-1]

    yield make
    for e in built:
        e.close()


def _neural_server(engine: NeuralEngine, max_sessions: int) -> ServerThread:
    return server_thread(
        renderers={"neural": engine}, max_sessions=max_sessions, limits=NO_DEGRADE,
        stats_interval_s=0.1,
    )  # fmt: skip


def _signal(seed: int, n: int) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


@dataclass
class Result:
    ready: dict
    audio: np.ndarray  # (2, n) float32
    events: list[dict]  # JSON messages after ready, up to and including done

    def final_stats(self) -> dict:
        return [e for e in self.events if e["type"] == "stats"][-1]


def _start(st: ServerThread, speaker: Pose = SPEAKER) -> tuple[ClientConnection, dict]:
    return open_session(st, StartConfig(format="f32le", renderer="neural", speaker=speaker))


def _send(ws: ClientConnection, x: np.ndarray, first: int = 0, last: int | None = None) -> None:
    """Packets of x[first:last] (``first`` a multiple of the packet), as fast as the socket
    takes them."""
    last = x.shape[0] if last is None else last
    for i in range(first, last, PACKET):
        ws.send(audio_frame(i // PACKET, x[i : min(i + PACKET, last)], "f32le", pts=i))


def _finish(ws: ClientConnection, ready: dict) -> Result:
    ws.send(json.dumps({"type": "stop"}))
    msgs = recv_until(ws, is_type("done"), 30)
    with pytest.raises(ConnectionClosed) as e:
        ws.recv(timeout=5)
    assert e.value.rcvd is not None and e.value.rcvd.code == 1000
    frames = [unpack_frame(m) for m in msgs if isinstance(m, bytes)]
    parts = [decode_audio(f.payload, "f32le", 2) for f in frames]
    y = np.concatenate(parts, axis=1) if parts else np.zeros((2, 0), np.float32)
    return Result(ready, y, [m for m in msgs if isinstance(m, dict)])


def _session(st: ServerThread, x: np.ndarray, speaker: Pose = SPEAKER) -> Result:
    ws, ready = _start(st, speaker)
    _send(ws, x)
    return _finish(ws, ready)


def _wait_free(engine: NeuralEngine, free: int, timeout: float = 5.0) -> int:
    end = time.monotonic() + timeout
    while engine.engine.free_slots != free and time.monotonic() < end:
        time.sleep(0.01)
    return engine.engine.free_slots


def _reference(model: BinauralFlowUNet, x: np.ndarray, speaker: Pose) -> np.ndarray:
    """The single-stream render: NeuralBinauralRenderer step + flush over the whole input."""
    r = NeuralBinauralRenderer(model, speaker=speaker, listener=Pose(), nfe=2)
    parts = [r.step(x[None]), r.flush()]
    return np.concatenate([np.asarray(p) for p in parts if p is not None], axis=1)


# ----------------------------------------------------------------------------- tests


def test_three_sessions_batch_in_one_engine_and_get_every_sample(make_engine) -> None:
    engine = make_engine(3)
    n = 48000 + 123  # not a whole number of packets or of engine blocks
    xs = [_signal(k, n) for k in range(3)]
    with _neural_server(engine, 3) as st:
        with ThreadPoolExecutor(3) as pool:
            results = list(pool.map(lambda x: _session(st, x), xs))
        assert _wait_free(engine, 3) == 3  # every slot free again once the sessions ended
    for res in results:
        assert res.ready["renderer"] == "neural"
        assert res.audio.shape == (2, n)  # exactly as many samples back as sent
        assert not any(e["type"] == "error" for e in res.events), res.events
        stats = [e for e in res.events if e["type"] == "stats"]
        assert stats, "no stats event"
        for s in stats:
            eng = s["audio"]["engine"]
            assert eng is not None, s
            assert (eng["device"], eng["dtype"], eng["mode"]) == ("cpu", "float32", "eager")
            assert eng["capacity"] == 3 and eng["nfe"] == 2
        final = res.final_stats()
        assert final["renderer"] == "neural" and not final["degraded"]
        assert final["audio"]["samples_out"] == n
        assert final["audio"]["engine"]["ticks"] > 0
    assert sorted(r.final_stats()["audio"]["engine"]["slot"] for r in results) == [0, 1, 2]
    st_ = engine.engine.stats
    assert st_.max_batch > 1, st_.batch_hist  # the sessions shared ticks
    assert st_.blocks >= 3 * (n // engine.block)
    assert st_.ticks < st_.blocks


def test_vanished_client_frees_its_slot_and_the_others_go_on(
    make_engine, model: BinauralFlowUNet
) -> None:
    engine = make_engine(3)
    n = 24000 + 7
    half = 24 * PACKET
    xs = [_signal(10 + k, n) for k in range(2)]
    speakers = [Pose((0.0, 1.5, 0.0)), Pose((1.0, 1.0, 0.2))]
    with _neural_server(engine, 3) as st:
        b, c = (_start(st, sp) for sp in speakers)
        gone, _ = _start(st)
        assert engine.engine.free_slots == 0
        for (ws, _), x in zip((b, c), xs, strict=True):
            _send(ws, x, 0, half)
        _send(gone, _signal(99, n), 0, half)
        gone.socket.shutdown(socket.SHUT_RDWR)  # vanish mid-stream, no closing handshake
        gone.socket.close()
        t0 = time.monotonic()
        assert _wait_free(engine, 1, 3.0) == 1  # the vanished session's slot, promptly
        assert time.monotonic() - t0 < 3.0
        for (ws, _), x in zip((b, c), xs, strict=True):
            _send(ws, x, half)
        results = [_finish(ws, ready) for ws, ready in (b, c)]
        assert _wait_free(engine, 3) == 3
    for res, x, sp in zip(results, xs, speakers, strict=True):
        assert res.ready["renderer"] == "neural"
        assert res.audio.shape == (2, n)
        assert not res.final_stats()["degraded"]
        assert not any(e["type"] == "error" for e in res.events), res.events
        assert np.abs(res.audio - _reference(model, x, sp)).max() < 1e-4  # unaffected


def test_full_engine_gives_the_dsp_renderer_with_a_warning(make_engine) -> None:
    engine = make_engine(1)
    n = 9600 + 31
    x1, x2 = _signal(20, n), _signal(21, n)
    with _neural_server(engine, 2) as st:
        ws1, ready1 = _start(st)
        assert ready1["renderer"] == "neural" and engine.engine.free_slots == 0
        ws2, ready2 = _start(st)
        assert ready2["renderer"] == "dsp" and ready2["latency_ms"] == 0.0
        err = recv_until(ws2, is_type("error"))[-1]
        assert err["code"] == "renderer_unavailable"
        assert err["message"] == "the neural renderer is full; using dsp"
        _send(ws2, x2)
        res2 = _finish(ws2, ready2)
        _send(ws1, x1)
        res1 = _finish(ws1, ready1)
        assert _wait_free(engine, 1) == 1
    assert res2.audio.shape == (2, n) and res1.audio.shape == (2, n)  # nothing lost
    assert res2.final_stats()["renderer"] == "dsp"
    assert res2.final_stats()["audio"]["engine"] is None  # no engine slot: a DSP renderer
    assert res1.final_stats()["audio"]["engine"]["slot"] == 0
    assert not any(e["type"] == "error" for e in res1.events)


@pytest.mark.parametrize("process", [False, True], ids=["thread", "child-process"])
def test_each_session_through_the_engine_equals_a_single_stream_render(
    make_engine, model: BinauralFlowUNet, process: bool
) -> None:
    """f32le on the wire: the float32 output as rendered; two concurrent sessions with
    different inputs and speakers, each equal to its own single-stream render; also with the
    network in a child process (what ``serve`` does on the CPU)."""
    engine = make_engine(2, process)
    assert engine.engine.process is process
    n = 30000 + 77
    xs = [_signal(30, n), _signal(31, n)]
    speakers = [Pose((0.3, 1.5, 0.0)), Pose((-1.2, 0.5, 0.3))]
    with _neural_server(engine, 2) as st, ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda a: _session(st, *a), zip(xs, speakers, strict=True)))
    for res, x, sp in zip(results, xs, speakers, strict=True):
        assert res.ready["renderer"] == "neural" and not res.final_stats()["degraded"]
        ref = _reference(model, x, sp)
        assert res.audio.shape == ref.shape == (2, n)
        assert np.abs(res.audio - ref).max() < 1e-4
    assert np.abs(results[0].audio - results[1].audio).max() > 1e-3  # not the same render
