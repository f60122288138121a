"""The model engines: the neural engine's session renderer (blocks, fallback, poses) and one
model shared by sessions; the reasoner engines; the process's engine set (untrained weights:
the point is the plumbing: sample counts, equivalence with an offline render)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import torch

from livesense.audio.geometry import Pose
from livesense.live.engines import (
    DspEngine,
    Engines,
    FakeReasoner,
    NeuralEngine,
    NullReasoner,
    SessionRenderer,
    reasoner_engine,
)
from livesense.live.server.app import ServerThread
from livesense.live.server.client import LiveClient
from livesense.live.server.config import ServerConfig
from livesense.live.server.protocol import StartConfig
from livesense.models.binaural import NeuralBinauralRenderer, live_block
from livesense.streaming.frames import PoseUpdate, Question, TextEvent, VideoFrame


@pytest.fixture(scope="module")
def engine() -> NeuralEngine:
    torch.set_num_threads(1)
    return NeuralEngine(random_weights=True, nfe=2)  # a fixed NFE: renders comparable here


def _render(r: SessionRenderer, x: np.ndarray, packet: int = 480) -> np.ndarray:
    out = [r.step(x[:, i : i + packet]) for i in range(0, x.shape[1], packet)] + [r.flush()]
    return np.concatenate([o for o in out if o is not None], axis=1)


def test_neural_session_renderer_is_the_offline_render_in_blocks(engine: NeuralEngine) -> None:
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 6000))).astype(np.float32)
    sp = Pose((0, 1, 0))
    r = engine.create(sp, Pose(), 48000)
    assert r.name == "neural" and r.fallback is not None and not r.degraded
    assert r.granularity == live_block(engine.config) == 2048  # 16 STFT frames per call
    first = r.step(x)
    assert first is not None and first.shape[1] < 6000  # holds back the incomplete block
    r.close()
    assert engine.engine.free_slots == engine.engine.capacity  # close frees the slot
    live = NeuralEngine(random_weights=True)
    assert live.engine.policy is not None  # live default: the NFE policy, for all slots
    live.close()
    r = engine.create(sp, Pose(), 48000)
    y = _render(r, x)
    r.close()
    ref = NeuralBinauralRenderer(engine.model, speaker=sp, nfe=engine.nfe).process(x)
    assert y.shape == ref.shape == (2, 6000)
    assert np.abs(y - np.asarray(ref)).max() < 1e-4


def test_pose_updates_reach_the_renderer_and_its_fallback(engine: NeuralEngine) -> None:
    x = (0.1 * np.random.default_rng(1).standard_normal((1, 8192))).astype(np.float32)
    left = Pose((0.0, -1.5, 0.0))
    r = engine.create(Pose((0.0, 1.5, 0.0)), Pose(), 48000)
    r.apply_pose(PoseUpdate(4096, speaker=left.values))
    y = _render(r, x)
    ref_r = NeuralBinauralRenderer(engine.model, speaker=Pose((0.0, 1.5, 0.0)))
    ref_r.set_speaker_pose(left, 4096)  # process() would reset it: step + flush
    ref = np.concatenate([np.asarray(ref_r.step(x)), np.asarray(ref_r.flush())], axis=1)
    assert np.abs(y - ref).max() < 1e-4
    still_r = engine.create(Pose((0.0, 1.5, 0.0)), Pose(), 48000)
    still = _render(still_r, x)
    assert np.abs(y - still).max() > 0.01  # the update moved the speaker
    assert r.degrade() and r.degraded and r.name == "dsp"
    assert not r.degrade()  # only once


def test_dsp_engine_cannot_degrade_and_checks_the_rate() -> None:
    dsp = DspEngine()
    r = dsp.create(Pose((1.0, 0.0, 0.0)), Pose(), 48000)
    assert r.name == "dsp" and r.latency == 0 and not r.degrade()
    with pytest.raises(Exception, match="48000 Hz"):
        dsp.create(Pose((1.0, 0.0, 0.0)), Pose(), 44100)


def test_engines_build_lazily_once_and_keep_failures_out(engine: NeuralEngine) -> None:
    calls: list[int] = []

    def neural() -> NeuralEngine:
        calls.append(1)
        return engine

    def broken() -> NeuralEngine:
        raise RuntimeError("no weights")

    engines = Engines({"neural": neural, "broken": broken})
    assert engines.renderer_names == ["broken", "dsp", "neural"] and not calls
    assert engines.renderer("neural") is engine and engines.renderer("neural") is engine
    assert calls == [1]
    assert engines.renderer("broken") is None and engines.renderer("nope") is None
    assert isinstance(engines.dsp, DspEngine) and isinstance(engines.reasoner, NullReasoner)


def test_reasoner_engines() -> None:
    assert isinstance(reasoner_engine("none"), NullReasoner)
    assert isinstance(reasoner_engine("fake"), FakeReasoner)
    events: list[TextEvent] = []
    h = FakeReasoner(every=2).open_session(events.append)
    img = np.zeros((4, 4, 3), np.uint8)
    for i in range(4):
        h.submit_frame(VideoFrame(img, i * 0.5, i))
    h.ask(Question("how many?", 2.0, "q"))
    assert [e.type for e in events] == ["note", "note", "answer"] and h.evaluations == 3


def test_tiny_vlm_sessions_count_notes_as_evaluations() -> None:
    """The VLM handle's evaluations are notes + answers (``ReasonerStats.notes_emitted``)."""
    events: list[TextEvent] = []
    engine = reasoner_engine("tiny")
    h = engine.open_session(events.append)
    img = np.zeros((32, 32, 3), np.uint8)
    for i in range(6):
        h.submit_frame(VideoFrame(img, float(i), i))
    h.close()  # finishes: the last segment's note is written
    notes = sum(e.type == "note" for e in events)
    assert notes >= 1 and h.evaluations == notes


def test_neural_session_matches_offline_render(engine: NeuralEngine) -> None:
    x = (0.05 * np.random.default_rng(1).standard_normal(480 * 30)).astype(np.float32)
    sp = Pose((0.3, 1.5, 0.0))
    cfg = ServerConfig(port=0, token="t")
    with ServerThread(cfg, Engines({"neural": engine})) as st:

        async def run():
            async with LiveClient(
                st.url, StartConfig(format="f32le", speaker=sp, renderer="neural")
            ) as c:
                for i in range(0, x.shape[0], 480):
                    await c.send_audio(x[i : i + 480])
                    await asyncio.sleep(0.002)
                await c.stop()
                return c.result()

        res = asyncio.run(run())
    y = res.audio
    assert y.shape == (2, x.shape[0])  # every sample sent comes back
    assert res.ready["renderer"] == "neural"
    degraded = any(e.get("code") == "degraded" for e in res.events)
    if not degraded:  # on a busy machine the session may fall back to DSP, by design
        ref = NeuralBinauralRenderer(engine.model, speaker=sp).process(x[None])
        assert np.abs(y - np.asarray(ref)).max() < 1e-4
