"""Training on tiny hand-made sequences: checkpoints, loss history, resume, stopping, batches."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch

from livesense.audio.dataset import BinauralDataset, read_wav_segment
from livesense.audio.dsp_renderer import DspBinauralRenderer
from livesense.cli.signals import graceful_stop
from livesense.models.binaural.batches import find_splits, make_batch
from livesense.models.binaural.checkpoint import load_checkpoint
from livesense.models.binaural.training import OPTIMIZER_NAME, TrainConfig, train


def make_dataset(root: Path, write) -> Path:
    """root/{train,val,test} with 3 / 1 / 2 sequences."""
    for split, count in (("train", 3), ("val", 1), ("test", 2)):
        for k in range(count):
            write(root / split / f"seq_{k}", 10 * len(split) + k, rx=k == 1, speaker_yaw=180.0)
    return root


def _cfg(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(
        data=data,
        out=out,
        steps=30,
        preset="tiny",
        batch=2,
        segment_seconds=0.05,
        lr=3e-3,
        val_every=15,
        save_every=20,
        val_crops=4,
        log_every=5,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fake_sequence) -> tuple[Path, Path, object]:
    root = tmp_path_factory.mktemp("bin")
    data = make_dataset(root / "data", fake_sequence)
    out = root / "ckpt"
    res = train(_cfg(data, out))
    return data, out, res


def test_checkpoint_files_history_and_loss_decrease(trained: tuple[Path, Path, object]) -> None:
    data, out, res = trained
    for f in ("model.safetensors", "config.json", OPTIMIZER_NAME):
        assert (out / f).is_file(), f
    assert (out / "best" / "model.safetensors").is_file()
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["step"] == 30 and res.step == 30  # type: ignore[attr-defined]
    assert [s for s, _ in extra["train_loss"]] == [5, 10, 15, 20, 25, 30]
    assert [s for s, _ in extra["val_loss"]] == [0, 15, 30]
    assert extra["data"] == str(data.resolve()) and extra["elapsed_s"] > 0
    assert extra["preset"] == "tiny"
    vals = [v for _, v in extra["val_loss"]]
    assert all(np.isfinite(vals))
    assert vals[-1] < vals[0]  # fixed crops + fixed noise: comparable
    losses = res.losses  # type: ignore[attr-defined]
    assert np.mean(losses[:5]) > np.mean(losses[-5:])
    model, cfg = load_checkpoint(out)
    assert cfg.name == "tiny"
    assert extra["best_val"]["loss"] == min(vals)
    assert torch.load(out / OPTIMIZER_NAME, weights_only=True)["step"] == 30


def test_resume_continues_step_and_history(
    trained: tuple[Path, Path, object], tmp_path: Path
) -> None:
    data, out, _ = trained
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(out, copy)
    before = json.loads((copy / "config.json").read_text())["extra"]
    res = train(_cfg(data, copy, steps=40, resume=True, preset=None))
    assert res.step == 40 and len(res.losses) == 10
    extra = json.loads((copy / "config.json").read_text())["extra"]
    assert extra["step"] == 40
    assert extra["train_loss"][: len(before["train_loss"])] == before["train_loss"]
    assert [s for s, _ in extra["train_loss"]][-2:] == [35, 40]
    assert [s for s, _ in extra["val_loss"]] == [0, 15, 30, 40]
    assert extra["elapsed_s"] > before["elapsed_s"]
    # nothing left to do
    again = train(_cfg(data, copy, steps=40, resume=True, preset=None))
    assert again.step == 40 and again.losses == []


def test_ctrl_c_saves_a_checkpoint(tmp_path: Path, fake_sequence) -> None:
    data = tmp_path / "flat"
    fake_sequence(
        data / "a", 1, speaker_yaw=180.0
    )  # no train/ folder: trains on DIR, no validation

    def interrupt(step: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    out = tmp_path / "ckpt"
    res = train(_cfg(data, out, steps=100), on_step=interrupt)
    assert res.interrupted and res.step == 3 and res.val_history == []
    assert any("validation skipped" in n for n in res.notes)
    extra = json.loads((out / "config.json").read_text())["extra"]
    assert extra["step"] == 3 and (out / OPTIMIZER_NAME).is_file()
    assert not (out / "best").exists()


def test_sigterm_stops_after_the_step_and_saves_a_checkpoint(tmp_path: Path, fake_sequence) -> None:
    data = tmp_path / "flat"
    fake_sequence(data / "a", 2)
    before = signal.getsignal(signal.SIGTERM)

    def terminate(step: int, loss: float) -> None:
        if step == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    with graceful_stop() as stop:  # the CLI's handler: SIGTERM asks the loop to stop
        res = train(_cfg(data, tmp_path / "ckpt", steps=100), on_step=terminate, stop=stop.is_set)
    assert res.interrupted and res.step == 2
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["extra"]["step"] == 2
    assert signal.getsignal(signal.SIGTERM) is before  # the handler is put back


def test_batch_poses_follow_the_frames(trained: tuple[Path, Path, object]) -> None:
    data, _, _ = trained
    ds = BinauralDataset(data / "val", 1280, random_crop=False)
    b = make_batch(ds, [0, 1], load_checkpoint(trained[1])[1])
    assert b.mono.shape == (2, 1280) and b.binaural.shape == (2, 2, 1280)
    assert b.poses.shape == (2, 14, 10)
    # speaker y grows 0.002 per 400 samples; frame 0 of item 1 is at sample 1280 + 127
    assert b.poses[1, 1, 0].item() == pytest.approx(0.002 * 1407 / 400, abs=1e-6)
    assert torch.allclose(b.poses[:, 7:10], torch.zeros(2, 3, 10))


def test_dsp_prior_batches_carry_crops_of_the_whole_sequence_render(
    trained: tuple[Path, Path, object],
) -> None:
    data, _, _ = trained
    ds = BinauralDataset(data / "val", 1280, random_crop=False)
    cfg = load_checkpoint(trained[1])[1].replace(prior="dsp")
    b = make_batch(ds, [0, 1], cfg)
    assert b.dsp is not None and b.dsp.shape == b.binaural.shape
    info = ds.sequences[0]
    tx, rx = ds.trajectories(0)
    full = DspBinauralRenderer(tx, rx).process(read_wav_segment(info.path / "mono.wav", 0, 2560))
    assert np.abs(b.dsp[1].numpy() - full[:, 1280:2560]).max() < 1e-6  # item 1 starts at 1280
    assert make_batch(ds, [0], cfg.replace(prior="mono")).dsp is None


def test_find_splits_without_train_folder(tmp_path: Path, fake_sequence) -> None:
    fake_sequence(tmp_path / "d" / "a", 2, speaker_yaw=180.0)
    train_dir, val_dir, note = find_splits(tmp_path / "d")
    assert train_dir == tmp_path / "d" and val_dir is None and note and "no train/" in note
