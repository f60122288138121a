"""The neural renderer in live sessions and in the CLI (untrained weights: the point is the
plumbing: sample counts, equivalence with an offline render, one model shared by sessions)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from livesense.audio.geometry import Pose
from livesense.cli import main
from livesense.live.engines import BlockRenderer, NeuralEngine
from livesense.live.server.app import ServerConfig, ServerThread
from livesense.live.server.client import LiveClient
from livesense.live.server.protocol import StartConfig
from livesense.media.audio import read_audio
from livesense.models.binaural import NeuralBinauralRenderer, save_checkpoint


@pytest.fixture(scope="module")
def engine() -> NeuralEngine:
    torch.set_num_threads(1)
    return NeuralEngine(random_weights=True)


def test_block_renderer_keeps_the_contract(engine):
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 6000))).astype(np.float32)

    def make():
        return BlockRenderer(NeuralBinauralRenderer(engine.model, speaker=Pose((0, 1, 0))), 2048)

    y = make().step(x)
    assert y is not None and y.shape[1] < 6000  # holds back the incomplete block
    ref = NeuralBinauralRenderer(engine.model, speaker=Pose((0, 1, 0))).process(x)
    blk = make()
    out = [blk.step(x[:, i : i + 480]) for i in range(0, 6000, 480)] + [blk.flush()]
    out = np.concatenate([o for o in out if o is not None], axis=1)
    assert out.shape == ref.shape == (2, 6000)
    assert np.abs(out - np.asarray(ref)).max() < 1e-4


def test_neural_session_matches_offline_render(engine):
    x = (0.05 * np.random.default_rng(1).standard_normal(480 * 30)).astype(np.float32)
    sp = Pose((0.3, 1.5, 0.0))
    cfg = ServerConfig(port=0, token="t")
    with ServerThread(cfg, renderer=engine) as st:

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


def test_replay_neural_random_weights_and_checkpoint(tmp_path, engine, make_clip):
    clip = make_clip(tmp_path / "c.mp4", seconds=1.0)
    out = tmp_path / "o"
    args = ["replay", str(clip), "--out", str(out), "--fast", "--quiet", "--renderer", "neural"]
    assert main(args) == 0  # no checkpoint: the bundled model
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples_out"] == 48000 and stats["latency_ms"] > 5  # the neural timing
    assert main([*args, "--random-weights", "--nfe", "1"]) == 0
    stats = json.loads((out / "stats.json").read_text())
    assert stats["samples_out"] == stats["samples_in"] == 48000
    assert stats["chunk_samples"] == 2048  # neural replays in 16-frame blocks by default
    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, engine.model, engine.config)
    out2 = tmp_path / "o2"
    assert main([*args[:3], str(out2), *args[4:], "--checkpoint", str(ckpt), "--nfe", "1"]) == 0
    a = read_audio(str(out / "binaural.wav"), 48000, 2)
    b = read_audio(str(out2 / "binaural.wav"), 48000, 2)
    assert np.abs(a - b).max() < 1e-4  # the checkpoint renders what the model rendered
    assert main([*args, "--checkpoint", str(tmp_path / "missing")]) == 2


def test_missing_bundled_checkpoint_is_a_clear_error(tmp_path, make_clip, monkeypatch, capsys):
    import livesense.models.binaural.checkpoint as ck

    monkeypatch.setattr(ck, "BUNDLED_CHECKPOINT", tmp_path / "gone")
    clip = make_clip(tmp_path / "c.mp4", seconds=0.2)
    assert main(["replay", str(clip), "--out", str(tmp_path / "o"), "--fast", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bundled BinauralFlow checkpoint is missing" in err and "--renderer dsp" in err
    assert "Traceback" not in err
