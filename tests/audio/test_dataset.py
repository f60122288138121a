"""BinauralDataset on hand-made sequences in the Richard et al. layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from livesense.audio.dataset import BinauralDataset, read_wav_segment, wav_info
from livesense.audio.geometry import direction_angles, quat_rotate, yaw_quaternion
from livesense.errors import LivesenseError, MediaError
from livesense.media.wav import write_wav

SR = 48000


def _make_seq(
    root: Path,
    name: str,
    n: int = SR,
    n_bin: int | None = None,
    rows: int | None = None,
    rx: bool = False,
    float32: bool = True,
) -> Path:
    d = root / name
    d.mkdir(parents=True)
    ramp = (np.arange(n) % 1000) / 1000.0 - 0.5  # sample-position code
    write_wav(d / "mono.wav", ramp[None], SR, float32=float32)
    nb = n if n_bin is None else n_bin
    write_wav(
        d / "binaural.wav",
        np.stack([ramp[:nb], -ramp[:nb]]) if nb <= n else np.zeros((2, nb)),
        SR,
        float32=float32,
    )
    r = rows if rows is not None else n // 400 + 1
    i = np.arange(r)
    pos = np.stack([1.0 + 0.01 * i, np.zeros(r), np.zeros(r)], -1)  # x grows 1 cm per row
    np.savetxt(d / "tx_positions.txt", np.concatenate([pos, yaw_quaternion(1.0 * i)], -1))
    if rx:
        np.savetxt(
            d / "rx_positions.txt", np.concatenate([np.zeros((r, 3)), yaw_quaternion(-0.5 * i)], -1)
        )
    return d


def test_crops_have_the_right_shapes_and_content(tmp_path: Path) -> None:
    _make_seq(tmp_path, "a")
    _make_seq(tmp_path, "sub/b", n=SR // 2, rx=True)
    ds = BinauralDataset(tmp_path, 4800, seed=1)
    assert [s.name for s in ds.sequences] == ["a", "sub/b"]
    assert len(ds) == 10 + 5
    item = ds[3]
    assert item["mono"].shape == (1, 4800) and item["binaural"].shape == (2, 4800)
    assert item["speaker"].shape == (4800 // 128 + 1, 7) and item["listener"].shape == (38, 7)
    assert item["mono"].dtype == torch.float32
    start = item["start"]
    expected = (np.arange(start, start + 4800) % 1000) / 1000.0 - 0.5
    np.testing.assert_allclose(item["mono"][0].numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(item["binaural"][1].numpy(), -expected, atol=1e-6)
    assert ds[3]["start"] == start  # reproducible
    ds.set_epoch(1)
    assert any(
        ds[i]["start"] != BinauralDataset(tmp_path, 4800, seed=1)[i]["start"] for i in range(5)
    )
    batch = torch.utils.data.default_collate([ds[0], ds[1]])
    assert batch["mono"].shape == (2, 1, 4800)
    assert "listener moves" in ds.describe() and "2 sequences" in ds.describe()


def test_poses_are_interpolated(tmp_path: Path) -> None:
    _make_seq(tmp_path, "a", rx=True)
    ds = BinauralDataset(tmp_path, 4800, random_crop=False, frame_hop=100)
    item = ds[2]  # start 9600
    assert item["start"] == 9600
    sp = item["speaker"].numpy().astype(np.float64)
    samples = 9600 + 100 * np.arange(sp.shape[0])
    np.testing.assert_allclose(sp[:, 0], 1.0 + 0.01 * samples / 400, atol=1e-6)  # linear
    yaw, _ = direction_angles(quat_rotate(sp[:, 3:], np.array([1.0, 0.0, 0.0])))
    np.testing.assert_allclose(yaw, samples / 400 * 1.0, atol=1e-3)  # slerp: 1 degree per row
    lis_yaw, _ = direction_angles(
        quat_rotate(item["listener"].numpy()[:, 3:].astype(np.float64), np.array([1.0, 0, 0]))
    )
    np.testing.assert_allclose(lis_yaw, -0.5 * samples / 400, atol=1e-3)
    # Without rx_positions.txt the listener is at the origin facing +x.
    _make_seq(tmp_path / "other", "b")
    lis = BinauralDataset(tmp_path / "other", 4800)[0]["listener"].numpy()
    np.testing.assert_allclose(lis, np.tile([0, 0, 0, 0, 0, 0, 1.0], (lis.shape[0], 1)))


def test_whole_sequences_and_pcm16(tmp_path: Path) -> None:
    _make_seq(tmp_path, "a", n=12345, float32=False)
    ds = BinauralDataset(tmp_path, None)
    item = ds[0]
    assert len(ds) == 1 and item["mono"].shape == (1, 12345) and item["start"] == 0
    assert wav_info(tmp_path / "a" / "mono.wav").dtype == "<i2"
    seg = read_wav_segment(tmp_path / "a" / "mono.wav", 12340, 10)
    assert seg.shape == (1, 10) and np.all(seg[0, 5:] == 0)  # zeros past the end


def test_errors_name_the_folder(tmp_path: Path) -> None:
    d = _make_seq(tmp_path / "r1", "seq")
    (d / "binaural.wav").unlink()
    with pytest.raises(MediaError, match=r"seq.*missing binaural.wav"):
        BinauralDataset(tmp_path / "r1", 4800)
    _make_seq(tmp_path / "r2", "seq", n=SR, n_bin=SR - 500)
    with pytest.raises(MediaError, match="differ in length"):
        BinauralDataset(tmp_path / "r2", 4800)
    _make_seq(tmp_path / "r3", "seq", rows=60)  # 0.5 s of poses for 1 s of audio
    with pytest.raises(MediaError, match="too short"):
        BinauralDataset(tmp_path / "r3", 4800)
    (tmp_path / "r4").mkdir()
    with pytest.raises(MediaError, match="no sequences"):
        BinauralDataset(tmp_path / "r4", 4800)
    _make_seq(tmp_path / "r5", "seq", n=1000)
    with pytest.raises(LivesenseError, match="at least 4800"):
        BinauralDataset(tmp_path / "r5", 4800)
    d = _make_seq(tmp_path / "r6", "seq")
    write_wav(d / "mono.wav", np.zeros((1, SR // 2)), SR // 2)
    with pytest.raises(MediaError, match="24000 Hz"):
        BinauralDataset(tmp_path / "r6", 4800)
