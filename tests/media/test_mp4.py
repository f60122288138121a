"""Mp4Writer: streams and durations of the written file, early termination, odd inputs."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest

from livesense.errors import MediaError
from livesense.media.audio import read_audio
from livesense.media.container import probe
from livesense.media.mp4 import Mp4Writer
from livesense.media.video import iter_video_frames
from livesense.streaming.frames import AudioChunk, VideoFrame

RATE = 48000


def tone(n: int, channels: int = 2, freq: float = 440.0, start: int = 0) -> np.ndarray:
    t = (start + np.arange(n)) / RATE
    return np.tile(0.3 * np.sin(2 * np.pi * freq * t), (channels, 1)).astype(np.float32)


def image(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : (i * 4) % w] = (200, 50, 50)
    return img


def test_av_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "out.mp4"
    fps, seconds = 15, 1.0
    with Mp4Writer(path, 64, 48, fps, RATE, audio_channels=2) as w:
        hop = RATE // fps
        for i in range(int(seconds * fps)):
            w.write_video(VideoFrame(image(i), i / fps, i))
            w.write_audio(AudioChunk(tone(hop, start=i * hop), i * hop, RATE))
    info = probe(path)
    assert info.video is not None and info.audio is not None
    assert (info.video.codec, info.video.width, info.video.height) == ("h264", 64, 48)
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", RATE, 2)
    frames = list(iter_video_frames(path))
    assert len(frames) == 15
    np.testing.assert_allclose([f.pts for f in frames], np.arange(15) / fps, atol=1e-3)
    audio = read_audio(path, RATE, channels=2)
    assert audio.shape[1] == RATE * seconds
    assert abs(np.abs(audio[:, 2000:40000]).max() - 0.3) < 0.05


def test_audio_only_and_video_only(tmp_path: Path) -> None:
    with Mp4Writer(tmp_path / "a.mp4", None, None, sample_rate=RATE, audio_channels=1) as w:
        for k in range(10):
            w.write_audio(tone(4800, channels=1, start=4800 * k))  # pts=None: contiguous
        with pytest.raises(ValueError, match="no video stream"):
            w.write_video(image(0))
    info = probe(tmp_path / "a.mp4")
    assert info.video is None and info.audio is not None and info.audio.channels == 1
    assert abs(read_audio(tmp_path / "a.mp4").shape[1] - RATE) < 0.05 * RATE

    with Mp4Writer(tmp_path / "v.mp4", 64, 48, 10, audio_channels=0) as w:
        for i in range(7):
            w.write_video(image(i))  # bare arrays: pts at fps
        with pytest.raises(ValueError, match="no audio stream"):
            w.write_audio(tone(10))
    info = probe(tmp_path / "v.mp4")
    assert info.audio is None and info.video is not None
    assert len(list(iter_video_frames(tmp_path / "v.mp4"))) == 7


def test_early_termination_still_playable(tmp_path: Path) -> None:
    path = tmp_path / "early.mp4"
    with pytest.raises(KeyboardInterrupt), Mp4Writer(path, 64, 48, 15) as w:
        for i in range(5):
            w.write_video(VideoFrame(image(i), i / 15, i))
            w.write_audio(tone(3200), pts=i * 3200)
        raise KeyboardInterrupt
    assert w.closed
    assert len(list(iter_video_frames(path))) == 5
    assert abs(read_audio(path).shape[1] - 16000) < 0.05 * RATE

    with Mp4Writer(tmp_path / "empty.mp4", 64, 48, 15):
        pass
    with av.open(str(tmp_path / "empty.mp4")) as c:  # nothing written: still a valid file
        assert c.format.name.startswith("mov")


def test_audio_gaps_overlaps_and_channel_mapping(tmp_path: Path) -> None:
    path = tmp_path / "gaps.mp4"
    with Mp4Writer(path, None, None, sample_rate=RATE, audio_channels=2) as w:
        w.write_audio(tone(4800, channels=1), pts=0)  # mono -> both channels
        w.write_audio(tone(4800), pts=4800 + 9600)  # a 0.2 s gap: silence
        w.write_audio(tone(4800), pts=4800 + 9600 + 2400)  # half overlaps: dropped part
        w.write_audio(tone(480, channels=2), pts=10**12)  # absurd jump: not filled
        assert w.audio_samples_written == 4800 + 9600 + 4800 + 2400 + 480
    audio = read_audio(path, RATE, channels=2)
    assert abs(audio.shape[1] - 22080) < 0.05 * RATE
    np.testing.assert_allclose(audio[0], audio[1], atol=1e-3)
    assert np.abs(audio[:, 6000:13000]).max() < 0.02  # the gap is silent
    assert np.abs(audio[:, 15000:19000]).max() > 0.2


def test_odd_sizes_resizing_and_monotonic_pts(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with Mp4Writer(path, 65, 49, 10, audio_channels=0) as w:
        assert (w.width, w.height) == (64, 48)
        w.write_video(VideoFrame(image(0, 65, 49), 0.0))  # cropped to even
        w.write_video(VideoFrame(image(1, 130, 98), 0.1))  # scaled
        w.write_video(VideoFrame(image(2, 65, 49), 0.1))  # repeated pts: nudged forward
        with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
            w.write_video(np.zeros((48, 64), np.uint8))
    frames = list(iter_video_frames(path))
    assert len(frames) == 3 and frames[0].image.shape == (48, 64, 3)
    assert frames[0].pts < frames[1].pts < frames[2].pts


def test_threads_share_one_writer(tmp_path: Path) -> None:
    path = tmp_path / "threads.mp4"
    with Mp4Writer(path, 64, 48, 15, RATE, audio_channels=1) as w:

        def audio() -> None:
            for k in range(20):
                w.write_audio(tone(1600, channels=1, start=1600 * k), pts=1600 * k)

        t = threading.Thread(target=audio)
        t.start()
        for i in range(10):
            w.write_video(VideoFrame(image(i), i / 15, i))
        t.join()
    assert len(list(iter_video_frames(path))) == 10
    assert abs(read_audio(path).shape[1] - 32000) < 0.05 * RATE


def test_bad_arguments_and_closed_writer(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs video"):
        Mp4Writer(tmp_path / "x.mp4", None, None, sample_rate=None)
    with pytest.raises(MediaError, match="folder does not exist"):
        Mp4Writer(tmp_path / "no" / "x.mp4", 64, 48, 15)
    w = Mp4Writer(tmp_path / "c.mp4", 64, 48, 15)
    w.close()
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.write_video(image(0))
    with pytest.raises(ValueError, match="Hz"), Mp4Writer(tmp_path / "r.mp4", None, None) as w2:
        w2.write_audio(AudioChunk(tone(10), 0, 16000))
