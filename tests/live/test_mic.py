"""The microphone loop on its own: the PortAudio callbacks copy and count; pose moves
become control frames."""

from __future__ import annotations

import numpy as np

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
