"""Media probing, audio decode/resample/chunking, error paths and WAV writing."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from livesense.errors import MediaError
from livesense.media.audio import iter_audio_chunks, read_audio


def peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.argmax(spec) * rate / len(x))


# ----------------------------------------------------------------- decode + chunking


@pytest.mark.parametrize("chunk", [480, 441, 1])
def test_chunks_have_exact_pts_and_lose_nothing(make_clip, chunk: int) -> None:
    seconds = 0.25 if chunk == 1 else 1.0
    path = make_clip("a.wav", seconds=seconds, audio_rate=48000)
    chunks = list(iter_audio_chunks(path, 48000, chunk_samples=chunk))
    total = round(seconds * 48000)
    assert sum(c.samples for c in chunks) == total
    assert [c.pts for c in chunks] == list(range(0, total, chunk))
    assert all(c.samples == chunk for c in chunks[:-1]) and 0 < chunks[-1].samples <= chunk
    assert all(c.data.dtype == np.float32 and c.data.shape[0] == 1 for c in chunks)
    assert all(c.sample_rate == 48000 for c in chunks)
    whole = read_audio(path)
    np.testing.assert_array_equal(np.concatenate([c.data for c in chunks], axis=1), whole)
    ref = make_clip.sine(440.0, seconds, 48000)
    np.testing.assert_allclose(whole[0], ref, atol=1e-4)  # 16-bit PCM round trip


def test_resample_44k1_to_48k_keeps_length_and_frequency(make_clip) -> None:
    path = make_clip("a.wav", seconds=1.0, audio_rate=44100, freq=1000.0)
    reader = iter_audio_chunks(path, 48000, chunk_samples=480)
    assert (reader.source_rate, reader.source_channels) == (44100, 1)
    x = np.concatenate([c.data for c in reader], axis=1)
    assert abs(x.shape[1] - 48000) <= 1
    assert reader.samples_read == x.shape[1] and not reader.truncated
    assert abs(peak_hz(x[0], 48000) - 1000.0) < 2.0
    assert 0.45 < np.abs(x[0, 1000:-1000]).max() < 0.55  # level kept


def test_stereo_downmix_is_the_channel_mean(make_clip) -> None:
    left = make_clip.sine(500.0, 0.5, 48000, amp=0.6)
    data = np.stack([left, np.zeros_like(left)])
    path = make_clip("st.wav", seconds=0.5, channels=2, audio_data=data)
    mono = read_audio(path, 48000, channels=1)
    assert mono.shape == (1, 24000)
    np.testing.assert_allclose(mono[0], 0.5 * left, atol=1e-4)
    both = read_audio(path, 48000, channels=2)
    np.testing.assert_allclose(both, data, atol=1e-4)
    up = read_audio(make_clip("m.wav", seconds=0.5), 48000, channels=2)  # mono -> stereo
    np.testing.assert_array_equal(up[0], up[1])


def test_aac_in_mp4_decodes_to_the_written_length(make_clip) -> None:
    path = make_clip("av.mp4", seconds=1.0, audio_rate=44100, freq=880.0)
    x = read_audio(path, 16000)
    assert x.shape[1] == 16000  # AAC end padding trimmed to the declared duration
    assert abs(peak_hz(x[0], 16000) - 880.0) < 3.0


# ----------------------------------------------------------------- errors


def test_truncated_wav_yields_the_decodable_part(make_clip, caplog) -> None:
    path = make_clip("a.wav", seconds=1.0)
    data = path.read_bytes()
    start = data.index(b"data") + 8
    path.write_bytes(data[: start + 2 * 12000])  # header + 0.25 s of 16-bit mono
    reader = iter_audio_chunks(path, 48000, chunk_samples=480)
    with caplog.at_level(logging.WARNING):
        n = sum(c.samples for c in reader)
    assert n == 12000 and reader.truncated
    assert "truncated" in caplog.text and "a.wav" in caplog.text
    # The duration the header declares, not the one FFmpeg clamps to the file size.
    assert "decoded 0.25 s of audio of the 1.00 s it declares" in caplog.text
    (record,) = [r for r in caplog.records if "truncated" in r.getMessage()]
    assert record.once == ("truncated", str(path))  # the CLI says it once per file


def test_zero_sample_wav_is_an_empty_recording(tmp_path) -> None:
    from livesense.media.wav import WavWriter

    WavWriter(tmp_path / "empty.wav", 48000).close()
    with pytest.raises(MediaError, match=r"empty\.wav: the audio stream holds no samples"):
        read_audio(tmp_path / "empty.wav")


def test_truncated_faststart_mp4_yields_the_decodable_part(make_clip) -> None:
    path = make_clip("fs.mp4", seconds=2.0, faststart=True)
    data = path.read_bytes()
    mdat = data.index(b"mdat")  # faststart: the index first, then the media data
    path.write_bytes(data[: mdat + (len(data) - mdat) // 2])
    reader = iter_audio_chunks(path)
    n = sum(c.samples for c in reader)
    assert 0 < n < 2 * 48000 and reader.truncated


def test_mp4_cut_before_its_index_is_a_clear_error(make_clip) -> None:
    path = make_clip("cut.mp4", seconds=1.0)  # moov atom at the end: the first half has none
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(MediaError, match="corrupt/truncated"):
        read_audio(path)


# ----------------------------------------------------------------- WAV writing
