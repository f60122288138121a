"""The streaming WAV writer: valid after every write, clipping, float32, bad shapes."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from livesense.errors import MediaError
from livesense.media.audio import read_audio
from livesense.media.wav import WavWriter, write_wav


def test_wav_writer_file_is_valid_while_open_and_after_close(tmp_path: Path) -> None:
    path = tmp_path / "out.wav"
    rng = np.random.default_rng(0)
    x = np.clip(0.3 * rng.standard_normal((2, 4800)), -1, 1).astype(np.float32)
    with WavWriter(path, 48000, channels=2) as w:
        w.write(x[:, :1000])
        with wave.open(str(path)) as r:  # mid-write: a complete file of what was written
            assert (r.getnchannels(), r.getframerate(), r.getnframes()) == (2, 48000, 1000)
        np.testing.assert_allclose(read_audio(path, 48000, 2), x[:, :1000], atol=1e-4)
        w.write(x[:, 1000:])
        assert w.duration == pytest.approx(0.1)
    with wave.open(str(path)) as r:
        assert r.getnframes() == 4800 and r.getsampwidth() == 2
    np.testing.assert_allclose(read_audio(path, 48000, 2), x, atol=1e-4)


def test_wav_writer_clips_float_option_and_bad_shapes(tmp_path: Path) -> None:
    x = np.array([[0.5, 2.0, -3.0, np.nan, -0.25]], np.float32)
    write_wav(tmp_path / "f.wav", x, 16000, float32=True)
    np.testing.assert_array_equal(read_audio(tmp_path / "f.wav", 16000), [[0.5, 1, -1, 0, -0.25]])
    write_wav(tmp_path / "i.wav", x[0], 16000)  # 1-D mono accepted
    np.testing.assert_allclose(
        read_audio(tmp_path / "i.wav", 16000), [[0.5, 1, -1, 0, -0.25]], atol=1e-4
    )
    w = WavWriter(tmp_path / "s.wav", 16000, channels=2)
    with pytest.raises(ValueError, match=r"\(2, n\)"):
        w.write(np.zeros((1, 10), np.float32))
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write(np.zeros((2, 10), np.float32))
    with pytest.raises(MediaError, match="folder does not exist"):
        WavWriter(tmp_path / "nope" / "x.wav", 16000)
