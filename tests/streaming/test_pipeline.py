"""StreamPipeline: one loop for replay and live devices; control frames reach the processor."""

from __future__ import annotations

import numpy as np

from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.audio.geometry import Pose
from livesense.media.audio import read_audio
from livesense.media.sinks import WavSink
from livesense.streaming.frames import AudioChunk, PoseUpdate
from livesense.streaming.pipeline import StreamPipeline

SR = 48000


class ListSink:
    def __init__(self):
        self.parts: list[np.ndarray] = []
        self.closed = False

    def write_audio(self, audio):
        self.parts.append(audio.copy())

    def write_video(self, frame):
        pass

    def close(self):
        self.closed = True
        return []


def chunks(x: np.ndarray, n: int):
    for i in range(0, x.shape[1], n):
        yield AudioChunk(x[:, i : i + n], i, SR)


def test_pose_update_frames_apply_at_their_sample(tmp_path):
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 9600))).astype(np.float32)
    left = (0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    frames = list(chunks(x, 480))
    frames.insert(10, PoseUpdate(4800, speaker=left))
    sink, wav = ListSink(), WavSink(tmp_path / "b.wav", SR)
    stats = StreamPipeline(DspBinauralRenderer(Pose((0.0, 1.0, 0.0))), SR).run(frames, [sink, wav])
    got = np.concatenate(sink.parts, axis=1)
    # Reference: the same update arriving live, after the first 4800 samples were rendered.
    ref_r = DspBinauralRenderer(Pose((0.0, 1.0, 0.0)))
    first = ref_r.step(x[:, :4800])
    ref_r.set_speaker_pose(Pose((0.0, -1.0, 0.0)), at_sample=4800)
    ref = np.concatenate([first, ref_r.step(x[:, 4800:])], axis=1)
    assert got.shape == (2, 9600) and np.abs(got - ref).max() < 1e-6
    assert stats.samples_in == stats.samples_out == 9600 and stats.chunks == 20
    assert sink.closed and stats.outputs == [str(tmp_path / "b.wav")]
    assert np.abs(read_audio(str(tmp_path / "b.wav"), SR, 2) - got).max() < 1e-4
    # The update moved the source from the right to the left ear.
    e = (got[:, 7000:9600] ** 2).mean(axis=1)
    assert e[0] > 2 * e[1]


def test_interrupted_run_flushes_and_closes():
    x = np.zeros((1, 4800), np.float32)

    def frames():
        yield from chunks(x[:, :2400], 480)
        raise KeyboardInterrupt

    sink = ListSink()
    stats = StreamPipeline(DspBinauralRenderer(), SR).run(frames(), [sink])
    assert stats.interrupted and sink.closed and stats.samples_out == 2400
