"""A session's audio path on its own: typed pending frames, poses at their sample, the end."""

from __future__ import annotations

import numpy as np

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.live.engines import DspEngine
from livesense.live.server.audio_path import AudioPath
from livesense.live.server.config import SessionLimits
from livesense.live.server.events import ErrorEvent
from livesense.live.server.protocol import (
    ErrorCode,
    PoseMessage,
    StartConfig,
    decode_audio,
    unpack_frame,
)
from livesense.streaming.frames import Control, PoseUpdate


def _path(out: list) -> tuple[AudioPath, DspEngine]:
    dsp = DspEngine()
    cfg = StartConfig(format="f32le", speaker=Pose((0.0, 1.0, 0.0)))
    renderer = dsp.create(cfg.speaker, cfg.listener, cfg.sample_rate)
    return AudioPath("s1", cfg, renderer, SessionLimits(), out.append, lambda: None), dsp


def _drain(path: AudioPath) -> None:
    while path.has_pending():
        path.process_one()


def test_packets_poses_and_the_end_are_typed_frames_rendered_in_order() -> None:
    out: list = []
    path, dsp = _path(out)
    x = (0.1 * np.random.default_rng(0).standard_normal(480 * 6)).astype(np.float32)
    left = Pose((0.0, -1.0, 0.0))
    for seq in range(3):
        assert path.push_packet(seq, x[None, 480 * seq : 480 * (seq + 1)], 0.0) == []
    path.push_pose(PoseMessage(None, left, None))  # None: from the next sample received
    for seq in range(3, 6):
        path.push_packet(seq, x[None, 480 * seq : 480 * (seq + 1)], 0.0)
    path.push_end()
    kinds = [type(f).__name__ for f in path._pending]
    assert kinds == ["_Received"] * 3 + ["PoseUpdate"] + ["_Received"] * 3 + ["Control"]
    pose = path._pending[3]
    assert isinstance(pose, PoseUpdate) and pose.pts == 1440 and pose.speaker == left.values
    assert isinstance(path._pending[-1], Control)
    _drain(path)
    assert path.finished.is_set() and path.samples_in == path.samples_out == 480 * 6
    y = np.concatenate([decode_audio(unpack_frame(f).payload, "f32le", 2) for f in out], axis=1)
    # Reference: the same update arriving live, after the first 1440 samples were rendered.
    ref = DspBinauralRenderer(Pose((0.0, 1.0, 0.0)), hrirs=dsp.hrirs)
    first = ref.step(x[:1440])
    ref.set_speaker_pose(left, 1440)
    assert np.abs(y - np.concatenate([first, ref.step(x[1440:])], axis=1)).max() < 1e-6
    still = DspBinauralRenderer(Pose((0.0, 1.0, 0.0)), hrirs=dsp.hrirs).step(x)
    assert np.abs(y - still).max() > 0.01  # the pose moved the speaker
    st = path.stats()
    assert st.renderer == "dsp" and not st.degraded and st.packets.received == 6
    assert st.latency_ms is not None and st.latency_ms.n == 6


def test_gaps_and_duplicates_are_error_events() -> None:
    out: list = []
    path, _ = _path(out)
    x = np.zeros((1, 480), np.float32)
    path.push_packet(0, x, 0.0)
    dup = path.push_packet(0, x, 0.0)
    assert dup == [ErrorEvent(ErrorCode.OUT_OF_ORDER, "audio packet seq 0 is late; dropped")]
    assert path.push_packet(2, x, 0.0) == []  # seq 1 may still come (reorder window)
    assert path.samples_in == 480
    for seq in (3, 4):
        assert path.push_packet(seq, x, 0.0) == []
    gap = path.push_packet(5, x, 0.0)  # 4 newer packets: seq 1 is lost
    assert [e.code for e in gap] == [ErrorCode.SEQ_GAP]
    assert path.samples_in == 6 * 480  # the missing packet is concealed in place
    late = path.push_packet(1, x, 0.0)
    assert late == [ErrorEvent(ErrorCode.OUT_OF_ORDER, "audio packet seq 1 is late; dropped")]
