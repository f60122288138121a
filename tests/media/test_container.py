"""Opening and probing media, one-line errors for bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from livesense.errors import MediaError
from livesense.media.audio import iter_audio_chunks, read_audio
from livesense.media.container import open_container, probe


def _bad_inputs(tmp_path: Path, make_clip) -> dict[str, Path]:
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n" * 50)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    return {
        "no such file": tmp_path / "missing.mp4",
        "is a directory": tmp_path,
        "not a readable media file": text,
        "empty file": empty,
        "no audio stream": make_clip("silent.mp4", audio=False),
    }


def test_probe_describes_streams(make_clip) -> None:
    info = probe(make_clip("av.mp4", seconds=1.0, fps=10, size=(64, 48), audio_rate=44100))
    assert info.duration == pytest.approx(1.0, abs=0.05)
    assert info.video is not None and info.audio is not None
    v, a = info.video, info.audio
    assert (v.codec, v.width, v.height, v.fps, v.frames) == ("h264", 64, 48, 10.0, 10)
    assert (a.codec, a.sample_rate, a.channels) == ("aac", 44100, 1)
    text = info.describe()
    assert "h264 64x48 @ 10 fps" in text and "aac 44100 Hz, 1 ch" in text
    assert len(text.splitlines()) == 4


def test_error_paths_raise_one_line_media_errors(tmp_path: Path, make_clip) -> None:
    for what, path in _bad_inputs(tmp_path, make_clip).items():
        for call in (lambda p: iter_audio_chunks(p), read_audio):
            with pytest.raises(MediaError) as e:
                call(path)
            msg = str(e.value)
            assert what in msg and str(path) in msg and "\n" not in msg
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "missing.mp4")
    with pytest.raises(MediaError, match="not a readable media file"):
        probe(tmp_path / "notes.txt")


def test_open_container_passes_devices_through() -> None:
    with open_container("sine=frequency=440:duration=0.1", format="lavfi") as c:
        assert c.streams.audio
    chunks = list(iter_audio_chunks("sine=r=8000:d=0.1", 8000, 100, format="lavfi"))
    assert [c.pts for c in chunks] == list(range(0, 800, 100))
    with pytest.raises(MediaError, match="no-such-filter"):
        open_container("no-such-filter=x", format="lavfi")
