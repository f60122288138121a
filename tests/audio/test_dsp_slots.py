"""DspSlots: the batched torch DSP renderer equals DspBinauralRenderer row by row, keeps rows
apart, resets rows, and runs on the meta device without making a CPU tensor."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import torch
from device_guard import NoCpuTensors

from livesense.audio.dsp_renderer import DspBinauralRenderer, DspRendererConfig
from livesense.audio.dsp_slots import DspSlots
from livesense.audio.geometry import (
    Pose,
    PoseArray,
    head_relative,
    quat_from_axis_angle,
    quat_multiply,
    yaw_quaternion,
)
from livesense.audio.hrtf import load_hrirs
from livesense.audio.trajectory import OrbitTrajectory, StaticTrajectory, Trajectory
from livesense.errors import ConfigError

FS = 48000
TOL = 2e-5  # float32 filtering vs the float64 numpy renderer, unit-scale input
HR = load_hrirs(None, FS)


class Spin(Trajectory):
    """A listener at ``position`` turning at ``rate`` deg/s, head pitched 20 degrees up."""

    def __init__(self, position: Sequence[float], rate: float):
        self.p, self.rate = np.asarray(position, dtype=np.float64), rate
        self.tilt = quat_from_axis_angle((0.0, 1.0, 0.0), -20.0)

    def at(self, t: np.ndarray) -> PoseArray:
        t = np.asarray(t, dtype=np.float64)
        q = quat_multiply(yaw_quaternion(self.rate * t), self.tilt)
        return PoseArray(np.repeat(self.p[None], t.shape[0], 0), q)


# (speaker, listener) per row: three static pairs (beyond max_distance for the small configs,
# nearer than min_distance, generic), an orbiting speaker, a turning and moving listener, and a
# speaker at the head centre (distance 0: the "ahead" HRIR).
SCENES: list[tuple[Trajectory, Trajectory]] = [
    (StaticTrajectory(Pose((5.0, -3.0, 1.0))), StaticTrajectory(Pose())),
    (StaticTrajectory(Pose((0.05, 0.08, 0.0))), StaticTrajectory(Pose((0.0, 0.0, 0.02)))),
    (
        StaticTrajectory(Pose((1.2, 0.7, 0.1), (0.0, 0.0, 0.6, 0.8))),
        StaticTrajectory(Pose((0.1, -0.2, 0.0), (0.0, 0.0, -0.2, 0.98))),
    ),
    (OrbitTrajectory(radius=1.3, period_s=0.05, height=0.3, start_azimuth=20.0), Pose()),
    (StaticTrajectory(Pose((1.0, 0.5, 0.0))), Spin((0.1, -0.2, 0.05), rate=2500.0)),
    (StaticTrajectory(Pose((0.3, 0.2, 0.0))), StaticTrajectory(Pose((0.3, 0.2, 0.0)))),
]
CONFIGS = {
    "default": DspRendererConfig(),
    "offsets": DspRendererConfig(
        block=64,
        max_distance=4.0,
        min_distance=0.3,
        source_offset=(0.09, 0.0, -0.2),
        listener_offset=(0.02, 0.0, -0.1),
    ),
    "no-crossfade": DspRendererConfig(block=32, crossfade=False, max_distance=3.0),
}


def _traj(obj: Trajectory | Pose) -> Trajectory:
    return obj if isinstance(obj, Trajectory) else StaticTrajectory(obj)


def _poses(traj: Trajectory | Pose, n0: int, blocks: int, block: int) -> np.ndarray:
    """(7, blocks + 1) poses at the boundaries n0 + j * block, as the numpy renderer evaluates."""
    pa = _traj(traj).at((n0 + block * np.arange(blocks + 1)) / float(FS))
    return np.concatenate([pa.positions, pa.orientations], axis=-1).T


def _batch(scenes, n0s, blocks, block):
    sp = np.stack([_poses(s, n0, blocks, block) for (s, _), n0 in zip(scenes, n0s, strict=True)])
    li = np.stack([_poses(li, n0, blocks, block) for (_, li), n0 in zip(scenes, n0s, strict=True)])
    return torch.from_numpy(sp), torch.from_numpy(li)


def _refs(scenes, cfg):
    return [DspBinauralRenderer(s, li, hrirs=HR, config=cfg) for s, li in scenes]


def _noise(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, (rows, n)).astype(np.float32)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_row_equals_its_numpy_renderer(name):
    cfg, blocks, chunks = CONFIGS[name], 4, 6
    rows = len(SCENES)
    pad_row = rows  # the spare row: rendered twice per call, output ignored
    slots = DspSlots(HR, cfg, capacity=rows + 1, blocks=blocks)
    refs, rng = _refs(SCENES, cfg), np.random.default_rng(1)
    scenes = [*SCENES, (Pose(), Pose())]
    worst = 0.0
    for c in range(chunks):
        order = [*rng.permutation(rows).tolist(), pad_row, pad_row]
        x = _noise(rng, len(order), slots.chunk)
        sp, li = _batch(
            [scenes[r] for r in order], [c * slots.chunk] * len(order), blocks, cfg.block
        )
        y = slots.render(torch.tensor(order), torch.from_numpy(x), sp, li)
        assert y.shape == (len(order), 2, slots.chunk) and y.dtype == torch.float32
        for i, r in enumerate(order[:rows]):
            want = refs[r].step(x[i])
            worst = max(worst, float(np.abs(y[i].numpy() - want).max()))
    assert worst <= TOL
    # The moving rows did change HRIR direction (so the crossfades were exercised).
    n = np.arange(0, chunks * slots.chunk + 1, cfg.block) / FS
    for s, li in SCENES[3:5]:
        sp_, lp = _traj(s).at(n), _traj(li).at(n)
        rel = head_relative(sp_.positions, lp.positions, lp.orientations)
        assert len(set(HR.nearest(rel).tolist())) >= 3


def test_rows_not_rendered_are_bit_identical_and_resume_where_they_were():
    cfg, blocks = CONFIGS["default"], 2
    scenes = SCENES[2:5]
    slots = DspSlots(HR, cfg, capacity=3, blocks=blocks)
    refs, rng = _refs(scenes, cfg), np.random.default_rng(2)
    n0 = [0, 0, 0]

    def render(rows: list[int]) -> None:
        x = _noise(rng, len(rows), slots.chunk)
        sp, li = _batch([scenes[r] for r in rows], [n0[r] for r in rows], blocks, cfg.block)
        y = slots.render(torch.tensor(rows), torch.from_numpy(x), sp, li).numpy()
        for i, r in enumerate(rows):
            assert np.abs(y[i] - refs[r].step(x[i])).max() <= TOL
            n0[r] += slots.chunk

    render([0, 1, 2])
    render([2, 1, 0])
    before = [t[1].clone() for t in (slots.hist, slots.v_prev, slots.x_hist)]
    assert any(bool(t.abs().sum() > 0) for t in before)
    render([2, 0])
    render([0, 2])
    for t, b in zip((slots.hist, slots.v_prev, slots.x_hist), before, strict=True):
        assert torch.equal(t[1], b)
    render([1, 0, 2])  # row 1 continues as if the skipped chunks never happened


def test_reset_rows_starts_fresh_streams_and_leaves_the_others():
    cfg, blocks = CONFIGS["offsets"], 3
    scenes = [SCENES[3], SCENES[4]]
    slots = DspSlots(HR, cfg, capacity=2, blocks=blocks)
    refs, rng = _refs(scenes, cfg), np.random.default_rng(3)
    n0 = [0, 0]
    for c in range(5):
        if c == 3:
            slots.reset_rows(torch.tensor([0]))
            refs[0], n0[0] = _refs(scenes[:1], cfg)[0], 0
        x = _noise(rng, 2, slots.chunk)
        sp, li = _batch(scenes, n0, blocks, cfg.block)
        y = slots.render(torch.tensor([0, 1]), torch.from_numpy(x), sp, li).numpy()
        for r in range(2):
            assert np.abs(y[r] - refs[r].step(x[r])).max() <= TOL
            n0[r] += slots.chunk


def test_state_is_updated_in_place():
    slots = DspSlots(HR, CONFIGS["default"], capacity=2, blocks=2)
    ptrs = [t.data_ptr() for t in (slots.hist, slots.v_prev, slots.x_hist)]
    sp, li = _batch(SCENES[3:5], [0, 0], 2, 128)
    slots.render(torch.tensor([1, 0]), torch.ones(2, slots.chunk), sp, li)
    slots.reset_rows(torch.tensor([1]))
    assert [t.data_ptr() for t in (slots.hist, slots.v_prev, slots.x_hist)] == ptrs
    assert float(slots.v_prev[0].abs().sum()) > 0 and float(slots.v_prev[1].abs().sum()) == 0


def _meta_call(slots: DspSlots, rows: int):
    meta = torch.device("meta")
    j = slots.blocks + 1
    return (
        torch.zeros(rows, dtype=torch.int64, device=meta),
        torch.empty(rows, slots.chunk, device=meta),
        torch.empty(rows, 7, j, dtype=torch.float64, device=meta),
        torch.empty(rows, 7, j, dtype=torch.float64, device=meta),
    )


@pytest.mark.parametrize("name", ["default", "no-crossfade"])
def test_render_runs_on_meta_and_creates_no_cpu_tensor(name):
    slots = DspSlots(HR, CONFIGS[name], capacity=4, blocks=8, device=torch.device("meta"))
    args = _meta_call(slots, 3)
    with NoCpuTensors() as guard:
        y = slots.render(*args)
        slots.reset_rows(args[0])
    assert y.device.type == "meta" and y.shape == (3, 2, slots.chunk) and y.dtype == torch.float32
    assert len(guard.created) > 20 and guard.cpu == []
    assert {t.device.type for t in (slots.hist, slots.v_prev, slots.x_hist)} == {"meta"}


def test_the_guard_sees_cpu_tensors():
    with NoCpuTensors() as guard:
        torch.empty(2, device="meta") + torch.zeros(2, device="meta")
        torch.arange(3)
    assert guard.cpu == ["aten.arange.default"]
    assert len(guard.created) >= 4


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="capacity must be a positive int"):
        DspSlots(HR, CONFIGS["default"], capacity=0, blocks=2)
    slots = DspSlots(HR, CONFIGS["default"], capacity=2, blocks=2)
    sp, li = _batch(SCENES[3:5], [0, 0], 2, 128)
    with pytest.raises(ValueError, match=r"expects x \(2, 256\)"):
        slots.render(torch.tensor([0, 1]), torch.zeros(2, 255), sp, li)
