"""The microphone loop on its own: the PortAudio callbacks copy and count; pose moves
become control frames."""

from __future__ import annotations

import time

import numpy as np
import pytest

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.live.mic import MicConfig, MicLoop
from livesense.streaming.frames import PoseUpdate


def test_callbacks_copy_and_count_underruns():
    s = MicLoop(DspBinauralRenderer(), MicConfig(block=480, prefill=0))
    out = np.full((480, 2), 7.0, np.float32)
    s._on_output(out, 480, None, None)
    assert not out.any() and s.out_ring.stats().underruns == 0  # not started: plain silence
    s._on_input((np.ones((480, 1)) * 16384).astype(np.int16), 480, None, None)
    assert s.in_ring.available == 480
    assert np.allclose(s.in_ring.read(480), 0.5)
    s._out_started = True
    s.out_ring.write(np.stack([np.full(300, 0.25), np.full(300, -0.25)]).astype(np.float32))
    s._on_output(out, 480, None, None)
    assert np.allclose(out[:300], [0.25, -0.25]) and not out[300:].any()  # silence, not garbage
    st = s.out_ring.stats()
    assert st.underruns == 1 and st.underrun_samples == 180


def test_live_session_key_moves_become_control_frames():
    s = MicLoop(DspBinauralRenderer(), MicConfig(block=480, duration_s=0.02))
    s.in_ring.write(np.ones(960, np.float32) * 0.1)
    s.update_pose(speaker=Pose((0.0, 2.0, 0.0)))
    frames = list(s._frames())
    assert isinstance(frames[0], PoseUpdate) and frames[0].pts == 0
    assert frames[0].speaker == (0.0, 2.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    assert [f.pts for f in frames[1:]] == [0, 480] and s.position == 960
    assert s.stats.stop_reason == "duration reached"


class _SilentDevice:
    """A sounddevice stand-in whose streams open and stay active but never call back (a
    device with an enormous block, or one that stalled)."""

    class _Stream:
        def __init__(self, **kw: object) -> None:
            self.active, self.latency = True, 0.01

        def start(self) -> None:
            pass

        def abort(self) -> None:
            self.active = False

        def close(self) -> None:
            pass

    InputStream = OutputStream = _Stream


@pytest.mark.timeout(30)  # it hung for ever before the wall-clock bound
def test_duration_is_honoured_when_the_device_delivers_nothing(monkeypatch):
    import livesense.live.mic as mic

    monkeypatch.setattr(mic, "import_sounddevice", lambda: _SilentDevice)
    cfg = MicConfig(duration_s=0.2)
    assert cfg.overtime_s == pytest.approx(2.0 + 0.05 + 4 * 480 / 48000)
    t0 = time.monotonic()
    stats = MicLoop(DspBinauralRenderer(), cfg).run()
    wall = time.monotonic() - t0
    assert 0.2 + cfg.overtime_s - 0.1 < wall < 0.2 + cfg.overtime_s + 2.0
    assert stats.stop_reason == "duration reached (the device delivered less audio)"
    assert stats.rendered_samples == 0


def test_block_must_fit_the_rings_and_large_blocks_queue():
    with pytest.raises(ValueError, match="exceeds half a ring"):
        MicConfig(block=48_000_000)
    assert MicConfig().queue_limit == MicConfig().max_queue  # the 10 ms default: unchanged
    big = MicConfig(block=4800)  # 100 ms blocks: two of them queue without being skipped
    assert big.queue_limit == big.prefill + 2 * 4800


def test_a_large_block_plays_without_being_skipped():
    """100 ms blocks: the prefill plus one block is queued normally, not a backlog to skip
    (the 100 ms cap skipped most of every block before)."""
    from livesense.live.mic import _DeviceSink

    s = MicLoop(DspBinauralRenderer(), MicConfig(block=4800))
    sink = _DeviceSink(s)
    out = np.zeros((4800, 2), np.float32)
    for k in range(3):
        sink.write_audio(np.full((2, 4800), 0.1 * (k + 1), np.float32))
        s._on_output(out, 4800, None, None)
    assert s.stats.output_skipped_samples == 0
    assert s.out_ring.read_pos == 3 * 4800  # in order, behind the 960-sample prefill:
    assert np.allclose(out[:960], 0.2) and np.allclose(out[960:], 0.3)
