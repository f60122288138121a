"""Video decoding: RGB frames, pts, fps sampling, downscaling, errors, and the sample asset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import livesense
from livesense.errors import MediaError
from livesense.media.audio import read_audio
from livesense.media.container import probe
from livesense.media.video import has_video, iter_video_frames, scaled_size

SAMPLE = Path(livesense.__file__).parent / "assets" / "sample.mp4"


def test_all_frames_rgb_with_pts_in_seconds(make_clip) -> None:
    path = make_clip(seconds=1.0, fps=15, size=(64, 48))
    reader = iter_video_frames(path)
    assert (reader.width, reader.height, reader.source_fps) == (64, 48, 15.0)
    frames = list(reader)
    assert len(frames) == 15 and not reader.truncated
    assert [f.index for f in frames] == list(range(15))
    np.testing.assert_allclose([f.pts for f in frames], np.arange(15) / 15, atol=1e-6)
    for i, f in enumerate(frames[:8]):
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        centre = f.image[24, 32].astype(int)
        assert np.abs(centre - make_clip.frame_colour(i)).max() <= 6  # yuv420p round trip


def test_fps_sampling_keeps_one_frame_per_slot(make_clip) -> None:
    path = make_clip(seconds=2.0, fps=15)
    frames = list(iter_video_frames(path, fps=5))
    assert len(frames) == 10
    np.testing.assert_allclose([f.pts for f in frames], np.arange(10) / 5, atol=1e-6)
    assert [f.index for f in frames] == list(range(10))
    assert len(list(iter_video_frames(path, fps=60))) == 30  # never duplicated


def test_lavfi_source() -> None:
    src = "testsrc2=size=80x60:rate=10:duration=0.5"
    frames = list(iter_video_frames(src, max_size=40, format="lavfi"))
    assert len(frames) == 5 and frames[0].image.shape == (30, 40, 3)


def test_downscale_keeps_aspect(make_clip) -> None:
    path = make_clip(seconds=0.2, fps=15, size=(128, 72))
    frames = list(iter_video_frames(path, max_size=64))
    assert {f.image.shape for f in frames} == {(36, 64, 3)}
    assert list(iter_video_frames(path, max_size=500))[0].image.shape == (72, 128, 3)
    assert scaled_size(1920, 1080, 320) == (320, 180)
    assert scaled_size(3, 1000, 10) == (1, 10)


def test_has_video_and_errors(tmp_path: Path, make_clip) -> None:
    assert has_video(make_clip(seconds=0.2))
    wav = make_clip("a.wav", seconds=0.2)
    assert not has_video(wav)
    with pytest.raises(MediaError, match="no video stream"):
        iter_video_frames(wav)
    text = tmp_path / "a.txt"
    text.write_text("hello\n" * 100)
    for path, what in [
        (tmp_path / "nope.mp4", "no such file"),
        (tmp_path, "is a directory"),
        (text, "not a readable media file"),
    ]:
        with pytest.raises(MediaError, match=what):
            iter_video_frames(path)
        with pytest.raises(MediaError, match=what):
            has_video(path)


def test_truncated_video_yields_the_decodable_frames(make_clip) -> None:
    path = make_clip(seconds=2.0, fps=15, faststart=True, audio=False)
    data = path.read_bytes()
    mdat = data.index(b"mdat")  # faststart: the index first, then the media data
    path.write_bytes(data[: mdat + (len(data) - mdat) * 6 // 10])
    reader = iter_video_frames(path)
    frames = list(reader)
    assert 0 < len(frames) < 30 and reader.truncated
    assert all(b.pts > a.pts for a, b in zip(frames, frames[1:], strict=False))


def test_sample_asset() -> None:
    assert SAMPLE.exists(), "run scripts/make_sample_clip.py"
    assert SAMPLE.stat().st_size < 1_000_000
    info = probe(SAMPLE)
    assert info.duration == pytest.approx(10.0, abs=0.2)
    assert info.video is not None and info.audio is not None
    assert (info.audio.codec, info.audio.sample_rate, info.audio.channels) == ("aac", 48000, 1)
    assert info.video.codec == "h264"
    frames = list(iter_video_frames(SAMPLE, fps=2))
    assert len(frames) == 20
    assert frames[0].image.std() > 10 and not np.array_equal(frames[0].image, frames[5].image)
    audio = read_audio(SAMPLE, 16000)
    assert abs(audio.shape[1] / 16000 - 10.0) < 0.1
    assert np.abs(audio[:, 16000:48000]).max() > 0.2  # speech in the first seconds
