"""Synthetic binaural data on tiny runs in tmp_path: layout, reproducibility, splits, voices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from livesense.audio import synth
from livesense.audio.dataset import wav_info
from livesense.audio.geometry import quat_rotate
from livesense.audio.room import RoomConfig
from livesense.audio.synth import VOICE_SPLITS, SynthConfig, generate_dataset, random_trajectory
from livesense.errors import LivesenseError
from livesense.media.wav import write_wav

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def _run(out: Path, seed: int = 3, n: int = 2, **kw: object) -> dict:
    return generate_dataset(SynthConfig(out, sequences=n, seconds=1.0, seed=seed, **kw))  # type: ignore[arg-type]


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@needs_espeak
def test_tiny_run_writes_the_layout(tmp_path: Path) -> None:
    manifest = _run(tmp_path / "a")
    root = tmp_path / "a"
    seqs = sorted(p for p in root.iterdir() if p.is_dir())
    assert [p.name for p in seqs] == ["seq_0000", "seq_0001"]
    for s in seqs:
        mono, binaural = wav_info(s / "mono.wav"), wav_info(s / "binaural.wav")
        assert (mono.sample_rate, mono.channels, mono.frames) == (48000, 1, 48000)
        assert (binaural.sample_rate, binaural.channels, binaural.frames) == (48000, 2, 48000)
        tx = np.loadtxt(s / "tx_positions.txt")
        assert tx.shape == (121, 7)  # 120 Hz rows covering the whole second
        d = np.linalg.norm(tx[:, :3], axis=-1)
        assert d.min() > 0.6 and d.max() < 2.7
        np.testing.assert_allclose(np.linalg.norm(tx[:, 3:], axis=-1), 1.0, atol=1e-5)
        facing = quat_rotate(tx[:, 3:], np.array([1.0, 0.0, 0.0]))  # speaker faces the listener
        assert np.all(np.sum(facing * -tx[:, :3] / d[:, None], axis=-1) > np.cos(np.radians(25)))
        meta = json.loads((s / "meta.json").read_text())
        assert meta["voice"] in VOICE_SPLITS["train"]
        if (s / "rx_positions.txt").exists():
            assert np.loadtxt(s / "rx_positions.txt").shape == (121, 7)
    assert json.loads((root / "split.json").read_text()) == manifest
    assert manifest["splits"]["train"]["sequences"] == ["seq_0000", "seq_0001"]


@needs_espeak
def test_same_seed_identical_files_other_seed_different(tmp_path: Path) -> None:
    _run(tmp_path / "a", n=1)
    _run(tmp_path / "b", n=1)
    _run(tmp_path / "c", n=1, seed=4)
    a, b, c = (_files(tmp_path / k) for k in "abc")
    assert a == b
    assert a["seq_0000/binaural.wav"] != c["seq_0000/binaural.wav"]


@needs_espeak
def test_split_all_has_disjoint_voices_and_random_rooms(tmp_path: Path) -> None:
    _run(tmp_path / "s", split="all", room="random", n=3)
    root = tmp_path / "s"
    manifest = json.loads((root / "split.json").read_text())
    voices = {k: set(v["voices"]) for k, v in manifest["splits"].items()}
    assert voices["train"].isdisjoint(voices["val"]) and voices["train"].isdisjoint(voices["test"])
    assert voices["val"].isdisjoint(voices["test"])
    for split in ("train", "val", "test"):
        meta = json.loads((root / split / "seq_0000" / "meta.json").read_text())
        assert meta["voice"] in voices[split]
        assert meta["room"]["size"] != [6.0, 5.0, 3.0]  # random room
    # Disjoint seed spaces: the val and test trajectories differ from train's.
    tx = [np.loadtxt(root / s / "seq_0000" / "tx_positions.txt") for s in ("train", "val", "test")]
    assert not np.allclose(tx[0], tx[1]) and not np.allclose(tx[1], tx[2])


def test_voice_table_is_disjoint() -> None:
    sets = [set(v) for v in VOICE_SPLITS.values()]
    assert sum(len(s) for s in sets) == len(set().union(*sets))


def test_trajectories_stay_in_the_room_and_in_range() -> None:
    rng = np.random.default_rng(0)
    room = RoomConfig.demo()
    kinds = set()
    for _ in range(20):
        poses, kind = random_trajectory(rng, 3.0, room)
        kinds.add(kind)
        assert poses.shape == (361, 7)
        inside = room.to_room(poses[:, :3])
        assert np.all(inside > 0.29) and np.all(inside < np.array(room.size) - 0.29)
        d = np.linalg.norm(poses[:, :3], axis=-1)
        assert d.min() >= 0.65 and d.max() <= 2.6
        assert np.max(np.linalg.norm(np.diff(poses[:, :3], axis=0), axis=-1)) * 120 < 5.0  # m/s
    assert kinds == {"arc", "line", "orbit"}
    turns = synth._head_turns(rng, 241)
    assert turns.shape == (241, 7) and np.all(turns[:, :3] == 0)


def test_user_voices_and_errors(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(LivesenseError, match="no .wav files"):
        _run(tmp_path / "o", voices=str(empty))
    voices = tmp_path / "voices"
    voices.mkdir()
    rng = np.random.default_rng(0)
    for i in range(10):
        tone = 0.2 * np.sin(2 * np.pi * (150 + 20 * i) * np.arange(16000) / 16000)
        write_wav(voices / f"talker{i}.wav", (tone * rng.uniform(0.5, 1, 16000))[None], 16000)
    _run(tmp_path / "u", voices=str(voices), n=1)
    meta = json.loads((tmp_path / "u" / "seq_0000" / "meta.json").read_text())
    assert meta["voice"].startswith("talker")
    assert wav_info(tmp_path / "u" / "seq_0000" / "mono.wav").frames == 48000


def test_missing_espeak_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(synth.shutil, "which", lambda name: None)
    with pytest.raises(LivesenseError, match="apt-get install espeak-ng"):
        _run(tmp_path / "o")
