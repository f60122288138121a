"""The render engine: slots batched in one tick equal the single-stream renderer, slots are
isolated, idle slots keep their state, resets and releases, failures, precision."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from livesense.audio.geometry import DEFAULT_LISTENER, DEFAULT_SPEAKER, Pose
from livesense.audio.trajectory import OrbitTrajectory
from livesense.errors import LivesenseError
from livesense.models.binaural import (
    EngineFull,
    FallbackRenderer,
    NeuralBinauralRenderer,
    RenderEngine,
)
from livesense.models.binaural.checkpoint import random_model

BLOCK = 16 * 128


@pytest.fixture(scope="module")
def small():
    return random_model("small", seed=3)


def _reference(model, x, speaker, listener=DEFAULT_LISTENER, seed=0, nfe=None):
    r = NeuralBinauralRenderer(model, speaker=speaker, listener=listener, seed=seed, nfe=nfe)
    with torch.inference_mode():
        return np.asarray(r.process(x))


def _stream_all(stream, x, chunk):
    outs = [stream.step(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)]
    outs.append(stream.flush())
    return np.concatenate([o for o in outs if o is not None], axis=1)


def _speaker(i: int) -> Pose:
    return Pose((1.5 + 0.3 * i, 0.8 - 0.4 * i, 0.1 * i))


@pytest.mark.parametrize("preset", ["tiny", "small"])
def test_one_slot_equals_the_renderer_for_any_chunking(model, small, speech_like, preset):
    m = model if preset == "tiny" else small
    x = speech_like(0.3, seed=2)  # 14,400 samples: 7 blocks and a partial one
    ref = _reference(m, x, _speaker(0))
    engine = RenderEngine(m, capacity=2)
    try:
        for chunk in (700, BLOCK, 5000):
            stream = engine.open(_speaker(0))
            y = _stream_all(stream, x, chunk)
            stream.close()
            assert y.shape == ref.shape == (2, x.shape[0])
            np.testing.assert_allclose(y, ref, atol=2e-5 * max(1.0, np.abs(ref).max()))
    finally:
        engine.close()


def test_moving_speaker_and_pose_updates_match(small, speech_like):
    x = speech_like(0.25, seed=4)
    orbit = OrbitTrajectory(radius=1.5, period_s=0.5)
    turn = Pose((0.0, 0.0, 0.0), (0.0, 0.0, 0.3827, 0.9239))  # listener turned 45 degrees
    r = NeuralBinauralRenderer(small, speaker=orbit)
    r.set_listener_pose(turn, at_sample=5000)  # (process() would reset it away)
    with torch.inference_mode():
        ref = np.concatenate([r.step(x), r.flush()], axis=1)
    engine = RenderEngine(small, capacity=1)
    try:
        s = engine.open(orbit)
        s.set_listener_pose(turn, at_sample=5000)
        y = _stream_all(s, x, 1024)
    finally:
        engine.close()
    np.testing.assert_allclose(y, ref, atol=2e-5 * max(1.0, np.abs(ref).max()))


@pytest.mark.parametrize("n_slots", [2, 3, 5, 8])
def test_concurrent_slots_batch_and_each_equals_its_single_render(small, speech_like, n_slots):
    xs = [speech_like(0.2, seed=10 + i) for i in range(n_slots)]
    refs = [_reference(small, xs[i], _speaker(i % 4), seed=i) for i in range(n_slots)]
    engine = RenderEngine(small, capacity=8)
    outs: list[np.ndarray | None] = [None] * n_slots
    streams = [engine.open(_speaker(i % 4), seed=i) for i in range(n_slots)]
    start = threading.Barrier(n_slots)

    def run(i: int) -> None:
        start.wait()
        outs[i] = _stream_all(streams[i], xs[i], BLOCK)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n_slots)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        engine.close()
    assert engine.stats.max_batch > 1  # they were rendered together
    assert engine.stats.blocks == sum(-(-(x.shape[0] + 256) // BLOCK) for x in xs)
    for y, ref in zip(outs, refs, strict=True):
        assert y is not None
        np.testing.assert_allclose(y, ref, atol=2e-5 * max(1.0, np.abs(ref).max()))


def test_an_idle_slot_keeps_its_state_and_another_slot_never_changes_it(small, speech_like):
    a, b1, b2 = speech_like(0.2, seed=1), speech_like(0.2, seed=2), speech_like(0.2, seed=3)
    ref_a = _reference(small, a, _speaker(0))
    results = []
    for b in (b1, b2):
        engine = RenderEngine(small, capacity=2)
        try:
            sa, sb = engine.open(_speaker(0)), engine.open(_speaker(1), seed=5)
            first = sa.step(a[:BLOCK])  # a goes first, then idles for b's whole stream
            _stream_all(sb, b, BLOCK)
            rest = _stream_all(sa, a[BLOCK:], 999)
            results.append(np.concatenate([first, rest], axis=1))
        finally:
            engine.close()
    np.testing.assert_allclose(results[0], ref_a, atol=2e-5)
    np.testing.assert_allclose(results[0], results[1], atol=1e-6)


def test_reset_mid_stream_starts_a_fresh_stream(small, speech_like):
    x, z = speech_like(0.2, seed=6), speech_like(0.15, seed=7)
    engine = RenderEngine(small, capacity=1)
    try:
        s = engine.open(_speaker(2))
        s.step(x[: 3 * BLOCK + 100])
        s.reset()
        y = _stream_all(s, z, 3000)
    finally:
        engine.close()
    np.testing.assert_allclose(y, _reference(small, z, _speaker(2)), atol=2e-5)


def test_slots_run_out_and_come_back_and_a_closed_stream_is_silent(model, speech_like):
    engine = RenderEngine(model, capacity=2)
    try:
        s1, s2 = engine.open(), engine.open()
        with pytest.raises(EngineFull, match="all 2 render slots are in use"):
            engine.open()
        s1.close()
        s1.close()  # idempotent
        assert engine.free_slots == 1
        s3 = engine.open()
        assert s3.slot == s1.slot
        y = s1.step(np.ones(BLOCK, np.float32))  # the stale stream cannot touch slot 3's state
        assert y is not None and not y.any()
        x = speech_like(0.1, seed=9)
        np.testing.assert_allclose(
            _stream_all(s3, x, BLOCK), _reference(model, x, DEFAULT_SPEAKER), atol=2e-5
        )
        s2.close()
        s3.close()
        assert engine.free_slots == 2
        assert engine.stats.active == 0
    finally:
        engine.close()


class _Broken(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.inner = model
        self.config = model.config
        self.cond = model.cond
        self.in_conv = model.in_conv

    def init_hist(self, batch):
        return self.inner.init_hist(batch)

    def init_scratch(self, batch, frames):
        return self.inner.init_scratch(batch, frames)

    def forward(self, *a, **k):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")


def test_a_model_failure_is_an_error_for_every_stream_not_a_hang(model):
    engine = RenderEngine(_Broken(model), capacity=2)
    try:
        with pytest.raises(LivesenseError, match="illegal memory access"):
            s = engine.open()  # (the engine may already have failed warming up)
            s.step(np.zeros(BLOCK, np.float32))
        with pytest.raises(LivesenseError, match="render engine failed"):
            engine.open()
    finally:
        engine.close()


def test_bfloat16_renders_close_to_float32(small, speech_like):
    x = speech_like(0.15, seed=11)
    ref = _reference(small, x, _speaker(1))
    engine = RenderEngine(small, capacity=1, dtype=torch.bfloat16)
    try:
        y = _stream_all(engine.open(_speaker(1)), x, BLOCK)
    finally:
        engine.close()
    assert next(small.parameters()).dtype == torch.float32  # the caller's model is untouched
    assert engine.stats.dtype == "bfloat16" and engine.stats.mode == "eager"
    err = np.sqrt(np.mean((y - ref) ** 2) / np.mean(ref**2))
    assert err < 0.1, err


def test_fallback_over_an_engine_slot_degrades_and_returns(small, speech_like):
    x = speech_like(0.4, seed=12)
    engine = RenderEngine(small, capacity=1)
    try:
        stream = engine.open(_speaker(0))
        fb = FallbackRenderer(stream)
        outs = []
        for i in range(0, x.shape[0], BLOCK):
            if i == 3 * BLOCK:
                fb.use_dsp(True)
            if i == 6 * BLOCK:
                fb.use_dsp(False)
            outs.append(fb.step(x[i : i + BLOCK]))
        outs.append(fb.flush())
        blocks_rendered = engine.stats.blocks
    finally:
        engine.close()
    y = np.concatenate([o for o in outs if o is not None], axis=1)
    assert y.shape == (2, x.shape[0]) and np.isfinite(y).all()
    assert blocks_rendered < -(-(x.shape[0] + 256) // BLOCK)  # bypassed blocks cost nothing
    assert np.abs(np.diff(y, axis=1)).max() < 0.5  # no click at either switch


def test_the_kernel_in_a_child_process_renders_the_same(small, speech_like):
    """``serve`` on a CPU runs the network in a child process (away from the event loop's
    GIL): same output, and a dead child is an error, not a hang."""
    x = speech_like(0.15, seed=13)
    engine = RenderEngine(small, capacity=2, process=True)
    try:
        y = _stream_all(engine.open(_speaker(3)), x, 1500)
        np.testing.assert_allclose(y, _reference(small, x, _speaker(3)), atol=2e-5)
        engine.kernel._proc.kill()
        s = engine.open()
        with pytest.raises(LivesenseError, match="render kernel process died"):
            s.step(np.zeros(BLOCK, np.float32))
    finally:
        engine.close()
